"""Tie the worker's life to its coordinator's: the kernel kills us when the parent dies.

`PR_SET_PDEATHSIG` is a Linux prctl reached through ctypes. It fires when the parent *thread* that forked us
exits, and it is cleared by setuid, so it is set here, first thing, and the parent pid is checked right after
(the parent may have died before the prctl took effect).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def bind_to_parent(expected_parent: int) -> bool:
    """Arrange SIGKILL on parent death; False when the parent is already gone (the caller exits)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # not fatal: lost heartbeats still end us
            pass
    return not expected_parent or os.getppid() == expected_parent
