"""Telling a resource limit or a sandbox refusal apart from an ordinary failure.

A skill that runs into the sandbox sees a plain exception, or a command sees a plain exit status. This
module names the cause, so the ERROR record says `ResourceLimit` or `SandboxViolation` instead of
`ExternalTool`:

    MemoryError                                   ResourceLimit     memory (RLIMIT_AS)
    OSError EFBIG                                 ResourceLimit     file size (RLIMIT_FSIZE; Python ignores
                                                                    SIGXFSZ, so the write fails instead)
    pids.max counter up while the skill ran       ResourceLimit     processes (cgroup pids.max; an EAGAIN
                                                                    alone could be any non-blocking call)
    OOM-kill counter of our cgroup went up        ResourceLimit     memory (cgroup memory limit)
    a command killed by SIGXCPU / SIGXFSZ         ResourceLimit     CPU time / file size (or a shell
                                                                    exiting 128 + that signal)
    a command whose stderr says MemoryError ...   ResourceLimit     memory
    a DNS lookup that fails (socket.gaierror)     SandboxViolation  no network in the sandbox
    PermissionError on a path outside the         SandboxViolation  Landlock refused the path
      sandbox's allowed paths, or with no path    SandboxViolation  seccomp refused the call (socket, ptrace)
    EACCES on another process's /proc files       SandboxViolation  Landlock's ptrace scoping
    EPERM, with or without a path                 SandboxViolation  a call seccomp refuses (a setuid chmod)
                                                                    or one needing a privilege the sandbox
                                                                    took away (chown, chmod of a file the
                                                                    worker does not own: no capabilities)
    ENETUNREACH, EAFNOSUPPORT, EPERM on sockets   SandboxViolation  no network in the sandbox
    a command whose stderr says "Permission       SandboxViolation  the same, seen from a program's stderr
      denied" / "Operation not permitted"                           (a heuristic: a program only prints it)

`configure` is called once by a sandboxed worker with its allowed paths and cgroup dirs; unsandboxed (unit
tests), only the exception types count.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from worker.pipeline.errors import JobError, JobErrorCategory

_allowed: tuple[str, ...] = ()
_cgroup_dirs: tuple[Path, ...] = ()
_SANDBOX_WORDS = ("Permission denied", "Operation not permitted", "Network is unreachable")
_MEMORY_WORDS = ("MemoryError", "memory exhausted", "Cannot allocate memory", "out of memory")
_NET_ERRNOS = frozenset({errno.ENETUNREACH, errno.EAFNOSUPPORT, errno.EHOSTUNREACH})


def configure(allowed_paths: list[str], cgroup_dirs: list[str]) -> None:
    """What this worker's sandbox allows, and where its cgroup counters are."""
    global _allowed, _cgroup_dirs
    _allowed = tuple(os.path.join(os.path.abspath(p), "") for p in allowed_paths)
    _cgroup_dirs = tuple(Path(d) for d in cgroup_dirs)


@dataclass(frozen=True)
class Counters:
    """Our cgroup's OOM kills and refused forks, read before and after a skill runs."""

    oom_kills: int = 0
    pids_refused: int = 0

    @classmethod
    def read(cls) -> Counters:
        oom = refused = 0
        for d in _cgroup_dirs:
            oom += _counter(d / "memory.oom_control", "oom_kill") + _counter(d / "memory.events", "oom_kill")
            refused += _counter(d / "pids.events", "max")
        return cls(oom, refused)


def limit_error(exc: BaseException, before: Counters | None = None) -> JobError | None:
    """The ResourceLimit / SandboxViolation error `exc` really is, or None for an ordinary failure."""
    after = Counters.read() if before is not None else None
    if before is not None and after is not None:
        if after.oom_kills > before.oom_kills:
            return JobError("ResourceLimit", f"memory limit: {_chain_text(exc)}", code="ENOMEM")
        if after.pids_refused > before.pids_refused:
            return JobError("ResourceLimit", f"process limit: {_chain_text(exc)}", code="EAGAIN")
    for link in _chain(exc):
        if isinstance(link, MemoryError):
            why = "memory limit: an allocation failed (MemoryError)"
            return JobError("ResourceLimit", why, code="ENOMEM")
        if not isinstance(link, OSError):
            continue
        if link.errno == errno.EFBIG:
            return JobError("ResourceLimit", f"file size limit: {link}", code="EFBIG")
        if isinstance(link, socket.gaierror):
            return JobError("SandboxViolation", f"no name resolution in the sandbox: {link}", code="EAI")
        if link.errno in _NET_ERRNOS:
            return JobError("SandboxViolation", f"no network in the sandbox: {link}", code="ENETUNREACH")
        if isinstance(link, PermissionError) and (link.errno == errno.EPERM or _outside(link.filename)):
            what = f"path {link.filename}" if link.filename else "system call"
            return JobError("SandboxViolation", f"the sandbox refused a {what}: {link}", code="EACCES")
    return None


def command_limit(
    sig: int | None, exit_code: int | None, stderr_tail: str, before: Counters
) -> tuple[JobErrorCategory, str, str] | None:
    """(category, why, code) for a command that failed because of a resource limit, else None. Checked
    before its timeout: a fork bomb that also ran out of time is reported as the bomb it was."""
    after = Counters.read()
    if after.oom_kills > before.oom_kills:
        return "ResourceLimit", "hit the memory limit (OOM-killed)", "ENOMEM"
    # A shell reports a child killed by a signal as exit status 128 + the signal.
    if sig == signal.SIGXCPU or exit_code == 128 + signal.SIGXCPU:
        return "ResourceLimit", "hit the CPU time limit", "SIGXCPU"
    if sig == signal.SIGXFSZ or exit_code == 128 + signal.SIGXFSZ:
        return "ResourceLimit", "hit the file size limit", "SIGXFSZ"
    if after.pids_refused > before.pids_refused:
        return "ResourceLimit", "hit the process limit (forks refused)", "EAGAIN"
    if any(word in stderr_tail for word in _MEMORY_WORDS):
        return "ResourceLimit", "ran out of memory (the memory limit)", "ENOMEM"
    return None


def command_refused(stderr_tail: str) -> bool:
    """Whether a failed command's stderr says the sandbox refused it (checked after timeouts and caps)."""
    return any(word in stderr_tail for word in _SANDBOX_WORDS)


def _outside(filename: object) -> bool:
    if not filename:
        return True  # no path: a refused system call (socket, ptrace, kill), which only the sandbox refuses
    if not _allowed:
        return False  # unsandboxed: a plain permission problem
    path = os.path.join(os.path.abspath(os.fsdecode(filename)), "")  # type: ignore[arg-type]
    if path.startswith("/proc/") and not path.startswith((f"/proc/{os.getpid()}/", "/proc/self/")):
        return True  # another process's environ, memory, fds: refused by the sandbox's ptrace scoping
    return not any(path.startswith(root) for root in _allowed)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _chain_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _counter(path: Path, key: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0
