"""Layer "seccomp": syscalls a file-processing worker never needs are refused, in two stages.

Early filter (apply_early, before any thread): EPERM for
- socket() of any family but AF_UNIX. One "family != AF_UNIX" rule rather than a list of families: it also
  covers AF_ALG, AF_KEY, AF_TIPC... and a family with junk in the upper 32 bits of the register (the kernel
  truncates it to an int, an equality rule on the full 64-bit value would miss it);
- ptrace and process_vm_*, mounting and the new mount API, namespaces (unshare, setns), module and kexec
  loading, bpf, perf events, keyrings, userfaultfd, io_uring (its operations bypass seccomp), handle-based
  opens, reboot, swap, accounting, quotas, fanotify;
- clone() with any CLONE_NEW* flag, and clone3() with ENOSYS: its flags live in memory a filter cannot read,
  and glibc falls back to clone(), whose flags can be inspected;
- ioctl TIOCSTI/TIOCLINUX (typing into a terminal we might have inherited);
- a setuid or setgid bit in any mode: chmod, fchmod, fchmodat(2), and the creating calls (open, openat,
  creat, mknod(at); mkdir needs no rule, the kernel keeps only 01777 of its mode); openat2 gets ENOSYS
  (its mode is in memory; libc falls back to openat). Re-setting a setgid bit a directory inherited is
  refused too, which a file-processing worker has no reason to do.
  Landlock has no right for chmod, and a worker running as root without capabilities still owns what it
  creates: without this it could leave a setuid-root program in the notes folder for anyone to run
  (systemd's RestrictSUIDSGID does the same).
Late filter (apply_late, once the ZeroMQ connection is up): EPERM for creating AF_UNIX sockets
(socket, socketpair), so the only unix socket the worker ever has is the one to its coordinator.

Both filters are loaded with TSYNC, so every thread gets them (the late one is installed when ZeroMQ's
threads already run). Names unknown on this architecture are skipped and listed in the detail. A syscall of
another ABI (int 0x80, x32) is killed by libseccomp's default bad-architecture action. libseccomp sets
no_new_privs itself before loading.
"""

from __future__ import annotations

import errno
import platform
import socket
from collections.abc import Callable

from protocol.sandbox import SandboxSpec
from worker.sandbox import _libc, procfs
from worker.sandbox import _libseccomp as scmp
from worker.sandbox.errors import LayerUnavailable, describe
from worker.sandbox.probes import NetProbe, unix_socket_refused

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "fanotify_init",
)

CLONE_NEW_FLAGS = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
#: The syscalls that set a file's mode, and the index of their mode argument.
MODE_ARGUMENT = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "open": 2,
    "openat": 3,
    "creat": 1,
    "mknod": 1,
    "mknodat": 2,
}
#: fchmodat2's number is the same on every architecture (the unified table from 6.6); used when an older
#: libseccomp does not know the name, so the rule is never silently missing.
FCHMODAT2_NR = 452
S_ISUID, S_ISGID = 0o4000, 0o2000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
#: int arguments are compared on their low 32 bits only: the kernel ignores the rest.
INT_MASK = 0xFFFFFFFF

_EPERM = scmp.act_errno(errno.EPERM)


class _State:
    early: str | None = None  # the early filter's detail once loaded
    early_failure: str = "not applied"
    late: bool = False


_state = _State()


def _clone_flags_arg() -> int:
    # s390 swaps clone's first two arguments (stack, flags); everywhere else flags come first.
    return 1 if platform.machine().startswith("s390") else 0


def _early_rules(filt: scmp.Filter) -> tuple[int, list[str]]:
    """Add the early filter's rules; returns how many syscalls are refused outright and the names this
    architecture does not have."""
    skipped: list[str] = []
    denied = 0

    def nr(name: str) -> int | None:
        found = scmp.resolve(name)
        if found is None:
            skipped.append(name)
        return found

    if (sock := nr("socket")) is not None:
        filt.add(_EPERM, sock, [scmp.Cmp(0, scmp.SCMP_CMP_NE, socket.AF_UNIX)])
    for name in DENIED:
        if (found := nr(name)) is not None:
            filt.add(_EPERM, found)
            denied += 1
    if (clone3 := nr("clone3")) is not None:
        filt.add(scmp.act_errno(errno.ENOSYS), clone3)
    if (clone := nr("clone")) is not None:
        arg = _clone_flags_arg()
        for flag in CLONE_NEW_FLAGS.values():
            filt.add(_EPERM, clone, [scmp.Cmp(arg, scmp.SCMP_CMP_MASKED_EQ, flag, flag)])
    if (ioctl := nr("ioctl")) is not None:
        for request in (TIOCSTI, TIOCLINUX):
            filt.add(_EPERM, ioctl, [scmp.Cmp(1, scmp.SCMP_CMP_MASKED_EQ, INT_MASK, request)])
    for name, arg in MODE_ARGUMENT.items():
        found = scmp.resolve(name)
        if found is None and name == "fchmodat2":
            found = FCHMODAT2_NR
        if found is None:
            skipped.append(name)  # open and creat do not exist on every architecture
            continue
        for bit in (S_ISUID, S_ISGID):
            filt.add(_EPERM, found, [scmp.Cmp(arg, scmp.SCMP_CMP_MASKED_EQ, bit, bit)])
    if (openat2 := scmp.resolve("openat2")) is not None:
        filt.add(scmp.act_errno(errno.ENOSYS), openat2)
    return denied, skipped


def _late_rules(filt: scmp.Filter) -> tuple[int, list[str]]:
    """Add the late filter's rules (same return shape as _early_rules)."""
    skipped: list[str] = []
    for name in ("socket", "socketpair"):
        found = scmp.resolve(name)
        if found is None:
            skipped.append(name)
            continue
        filt.add(_EPERM, found, [scmp.Cmp(0, scmp.SCMP_CMP_MASKED_EQ, INT_MASK, socket.AF_UNIX)])
    return 0, skipped


def _install(rules: Callable[[scmp.Filter], tuple[int, list[str]]]) -> tuple[int, list[str]]:
    """Build a TSYNC filter with `rules` and load it; the filter context is always released."""
    filt = scmp.Filter()
    try:
        filt.set_tsync()
        result = rules(filt)
        filt.load()
        return result
    finally:
        filt.release()


def apply_early(spec: SandboxSpec) -> str:
    """Install the early filter."""
    try:
        denied, skipped = _install(_early_rules)
    except OSError as exc:
        _state.early_failure = describe(exc)
        raise LayerUnavailable(describe(exc)) from exc
    note = f"; not on this arch: {', '.join(skipped)}" if skipped else ""
    _state.early = (
        f"sockets other than AF_UNIX, {denied} syscalls, clone3 (ENOSYS), clone with CLONE_NEW*, "
        f"setuid/setgid modes{note}"
    )
    return f"early filter (TSYNC): {_state.early}; late filter pending"


def apply_late(spec: SandboxSpec) -> str:
    """Stack the late filter; raises LayerUnavailable unless both filters are now in."""
    try:
        _install(_late_rules)
    except OSError as exc:
        raise LayerUnavailable(f"late filter: {describe(exc)}") from exc
    _state.late = True
    if _state.early is None:
        raise LayerUnavailable(f"late filter in, but the early one is missing: {_state.early_failure}")
    return f"early + late filters (TSYNC): {_state.early}; new AF_UNIX sockets"


def check(spec: SandboxSpec, net: NetProbe) -> str | None:
    """None when every thread is filtered, AF_INET sockets and unshare are refused with EPERM and (after
    the late stage) so are new AF_UNIX sockets."""
    unfiltered = [tid for tid, mode in procfs.task_status("Seccomp").items() if mode != "2"]
    if unfiltered:
        return f"threads {unfiltered} have no seccomp filter"
    for name, reach in (("TCP", net.tcp), ("UDP", net.udp)):
        if not reach.socket_refused:
            return f"{name} socket not refused with EPERM: {reach.how}"
    # unshare(0) is a no-op the kernel allows: only the filter turns it into EPERM.
    try:
        _libc.unshare(0)
        return "unshare(0) is allowed"
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return f"unshare(0): {describe(exc)}"
    if _state.late and not unix_socket_refused():
        return "a new AF_UNIX socket is allowed after the late stage"
    return None
