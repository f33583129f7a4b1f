"""Why a worker died, in the error categories a job's ERROR record carries.

Pure logic over the exit status and what the worker's cgroup saw (`jails.Aftermath`):

    killed by us (Kill)          its category: Timeout (deadline, hung), WorkerCrash, Protocol, ...
    cgroup OOM kill              ResourceLimit  memory limit
    SIGXCPU                      ResourceLimit  CPU time limit (RLIMIT_CPU soft limit)
    SIGXFSZ                      ResourceLimit  file size limit (RLIMIT_FSIZE)
    SIGSYS                       SandboxViolation  a system call the seccomp filter kills on
    SIGKILL + pids.max refusals  ResourceLimit  process limit (a fork bomb the kernel cut short)
    any other signal or exit     WorkerCrash    with the signal or exit code
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from coordinator.jails import Aftermath
from coordinator.spawn import describe_exit


@dataclass(frozen=True)
class Death:
    """The category and reason charged to the job a dead worker held."""

    category: str
    reason: str
    code: str  # "SIGKILL", "exit 7", ...


def classify_death(returncode: int, aftermath: Aftermath, killed_for: tuple[str, str] | None = None) -> Death:
    """The verdict for a worker that exited with `returncode` (negative: killed by that signal).

    `killed_for` is (category, reason) when the supervisor itself killed the worker: that reason wins, since
    it is what the supervisor saw first (a deadline), and the signal is only how it was carried out."""
    code, text = describe_exit(returncode)
    if killed_for is not None:
        category, reason = killed_for
        return Death(category, f"{reason}; worker {text}", code)
    sig = -returncode if returncode < 0 else None
    if aftermath.oom_kills:
        return Death("ResourceLimit", f"memory limit: the kernel's OOM killer ended it (worker {text})", code)
    if sig == signal.SIGXCPU:
        return Death("ResourceLimit", f"CPU time limit reached (worker {text})", code)
    if sig == signal.SIGXFSZ:
        return Death("ResourceLimit", f"file size limit reached (worker {text})", code)
    if sig == signal.SIGSYS:
        return Death("SandboxViolation", f"blocked system call (worker {text})", code)
    if aftermath.pids_limit_hits and sig == signal.SIGKILL:
        return Death("ResourceLimit", f"process limit: forks were refused (worker {text})", code)
    return Death("WorkerCrash", f"worker {text}", code)
