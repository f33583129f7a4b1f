"""Layers "no_new_privs" and "caps": no way back to privileges, by exec or otherwise.

no_new_privs: after `PR_SET_NO_NEW_PRIVS`, execve can never grant privileges (setuid bits and file
capabilities are ignored); Landlock and unprivileged seccomp both require it.

caps: a root worker drops every capability: first the bounding set (PR_CAPBSET_DROP needs CAP_SETPCAP, so it
goes first), then the ambient set, then effective/permitted/inheritable through capset(2). Dropping the
bounding set matters for root: a uid-0 process regains the full bounding set on every execve. This runs
after netns (unshare needs CAP_SYS_ADMIN) and before Landlock and seccomp. Once it has run, a root worker is
subject to plain file permissions (no CAP_DAC_OVERRIDE): it cannot write into a dir owned by another user.
Capabilities are per thread, which is why this must run before any thread starts. A non-root worker has
nothing to drop: the layer is active when its effective set is already empty.
"""

from __future__ import annotations

import errno
import os

from protocol.sandbox import SandboxSpec
from worker.sandbox import _libc, procfs
from worker.sandbox.errors import LayerUnavailable, describe

CAP_SETPCAP = 8


def apply_no_new_privs(spec: SandboxSpec) -> str:
    """Set no_new_privs on the calling thread (threads created later inherit it)."""
    try:
        _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise LayerUnavailable(describe(exc)) from exc
    return "set"


def check_no_new_privs(spec: SandboxSpec) -> str | None:
    """None when no_new_privs is set here and in every thread."""
    if _libc.prctl(_libc.PR_GET_NO_NEW_PRIVS) != 1:
        return "PR_GET_NO_NEW_PRIVS is 0"
    unset = [tid for tid, value in procfs.task_status("NoNewPrivs").items() if value != "1"]
    return f"threads {unset} lack no_new_privs" if unset else None


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap", encoding="utf-8") as fh:
        return int(fh.read())


def _caps(field: str) -> int:
    return int(procfs.status_fields().get(field, "0"), 16)


def _drop_bounding() -> int:
    """Drop every capability from the bounding set; returns how many were dropped."""
    dropped = 0
    for cap in range(_last_cap() + 1):
        if not _libc.prctl(_libc.PR_CAPBSET_READ, cap):
            continue
        try:
            _libc.prctl(_libc.PR_CAPBSET_DROP, cap)
            dropped += 1
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a capability this kernel does not know
                raise
    return dropped


def apply_caps(spec: SandboxSpec) -> str:
    """Drop every capability (bounding, ambient, effective, permitted, inheritable)."""
    if os.geteuid() != 0 and _caps("CapEff") == 0 and _caps("CapPrm") == 0:
        return "not root: no capabilities to drop"
    try:
        bounding = _drop_bounding() if _caps("CapEff") & (1 << CAP_SETPCAP) else 0
        try:
            _libc.prctl(_libc.PR_CAP_AMBIENT, _libc.PR_CAP_AMBIENT_CLEAR_ALL)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: a kernel before ambient capabilities (4.3)
                raise
        _libc.capset_zero()
    except OSError as exc:
        raise LayerUnavailable(describe(exc)) from exc
    threads = procfs.thread_count()
    if threads > 1:
        raise LayerUnavailable(f"threads already running ({threads}): only the calling thread dropped them")
    if _caps("CapBnd") and os.geteuid() == 0:
        raise LayerUnavailable(f"bounding set still {_caps('CapBnd'):#x} (no CAP_SETPCAP?)")
    return f"all dropped ({bounding} from the bounding set)"


def check_caps(spec: SandboxSpec) -> str | None:
    """None when no thread has an effective or permitted capability, and a root worker's bounding set is
    empty (else execve would hand root its capabilities back)."""
    for field in ("CapEff", "CapPrm", "CapAmb"):
        held = {tid: value for tid, value in procfs.task_status(field).items() if int(value or "0", 16)}
        if held:
            return f"{field} is not empty: {held}"
    if os.geteuid() == 0 and _caps("CapBnd"):
        return f"CapBnd is {_caps('CapBnd'):#x}"
    return None
