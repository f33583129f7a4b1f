"""Layer "session": the worker leads its own session, so it has no controlling terminal and one `killpg`
from the coordinator reaches everything it started.

The coordinator spawns workers with `start_new_session=True`; this checks that, and calls setsid() itself
when it was started some other way (tests, a manual run).
"""

from __future__ import annotations

import os

from protocol.sandbox import SandboxSpec
from worker.sandbox.errors import LayerUnavailable


def apply(spec: SandboxSpec) -> str:
    """Make sure we lead our session; the detail says who made it so."""
    if os.getsid(0) == os.getpid():
        return "session leader (started so)"
    try:
        os.setsid()
    except OSError as exc:  # EPERM: we already lead a process group, so setsid is refused
        raise LayerUnavailable(f"setsid: {exc.strerror}") from exc
    return "session leader (setsid)"


def check(spec: SandboxSpec) -> str | None:
    """None when we lead our session, else what is wrong."""
    sid, pid = os.getsid(0), os.getpid()
    return None if sid == pid else f"session {sid} is not led by us ({pid})"
