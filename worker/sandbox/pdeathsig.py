"""Layer "pdeathsig": the kernel sends us SIGKILL the moment our parent (the coordinator) dies.

`PR_SET_PDEATHSIG` is cleared by setuid and fires when the parent *thread* that forked us exits, so it is
set here, after any uid switch, and the parent is checked right after: if the coordinator died before the
prctl took effect we were re-parented to init (pid 1) and the signal will never come. A coordinator that is
itself pid 1 (a container entrypoint) cannot be told apart from that: run it under an init (`docker --init`).
A subreaper adopting us is not caught here; `worker.lifeline.bind_to_parent` compares against the exact
parent pid the coordinator passes on the command line.
"""

from __future__ import annotations

import os
import signal

from protocol.sandbox import SandboxSpec
from worker.sandbox import _libc
from worker.sandbox.errors import LayerUnavailable, describe


def apply(spec: SandboxSpec) -> str:
    """Arrange SIGKILL on parent death, then make sure the parent is still there."""
    try:
        _libc.prctl(_libc.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except OSError as exc:
        raise LayerUnavailable(describe(exc)) from exc
    parent = os.getppid()
    if parent == 1:
        raise LayerUnavailable("the coordinator is gone (our parent is now pid 1)")
    return f"SIGKILL when pid {parent} exits"


def check(spec: SandboxSpec) -> str | None:
    """None when the parent-death signal is SIGKILL and our parent is not init."""
    sig = _libc.get_pdeathsig()
    if sig != signal.SIGKILL:
        return f"parent-death signal is {sig}, not SIGKILL"
    return "our parent is pid 1" if os.getppid() == 1 else None
