"""Layer "rlimits": kernel resource limits for the worker and everything it starts.

- RLIMIT_AS: the address space (memory_bytes). zmq and threads fail near 64 MiB, so keep it generous.
- RLIMIT_CPU: *per job*. The hard limit is fixed for the worker's life, so it is set at spawn to a lifetime
  budget (cpu_s * CPU_LIFETIME_JOBS) and the soft limit, which may move freely below it, is set at the start
  of each job to "CPU used so far + cpu_s" (`start_job_cpu`). A job that overruns gets SIGXCPU at the soft
  limit first (soft < hard, so an overrun is recognisable), SIGKILL only at the hard one. Once less than
  cpu_s is left under the hard limit a job can no longer get its full budget: `begin_job` then returns
  False and the worker must be recycled (`cpu_budget_left` tells how much is left).
- RLIMIT_FSIZE: the largest file a job may write (CPython ignores SIGXFSZ, so a write fails with EFBIG).
- RLIMIT_NOFILE: only ever lowered, never above the hard limit we were given.
- RLIMIT_CORE = 0: a crashing parser must not dump a core full of other people's files.
- RLIMIT_NPROC only when not root: the kernel ignores it for root. It counts every task (process and
  thread) of the uid machine-wide, so it is set *relative*: the uid's tasks at start plus `processes`.
  A desktop user with 400 tasks would otherwise get a worker that cannot even start a thread. The
  cgroup's pids.max, where there is one, is the exact limit.
Limits are never raised above the hard limit we inherited (that would need CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import math
import os
import resource
import time

from protocol.sandbox import SandboxLimits, SandboxSpec
from worker.sandbox.errors import LayerUnavailable, describe

INF = resource.RLIM_INFINITY
#: The hard CPU limit is this many jobs' worth of soft limits: the worker's lifetime CPU budget.
CPU_LIFETIME_JOBS = 100
MIB = 1024 * 1024


def _cap(value: int, hard: int) -> int:
    """value, but never above an inherited hard limit."""
    return value if hard == INF else min(value, hard)


def _cpu_used() -> int:
    """CPU seconds this process used so far, rounded up (RLIMIT_CPU counts whole seconds, all threads)."""
    return math.ceil(time.process_time())


def _uid_tasks(uid: int) -> int:
    """How many tasks (threads included) `uid` runs now, as RLIMIT_NPROC counts them."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid == uid:
                count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:  # gone meanwhile
            continue
    return count


def _targets(spec: SandboxSpec) -> dict[str, tuple[int, int, int]]:
    """{name: (resource, soft, hard)} for the fixed limits, computed against our current hard limits."""
    lim = spec.limits
    wanted: dict[str, tuple[int, int]] = {
        "RLIMIT_AS": (resource.RLIMIT_AS, lim.memory_bytes),
        "RLIMIT_FSIZE": (resource.RLIMIT_FSIZE, lim.fsize_bytes),
        "RLIMIT_NOFILE": (resource.RLIMIT_NOFILE, lim.nofile),
        "RLIMIT_CORE": (resource.RLIMIT_CORE, 0),
    }
    if os.geteuid() != 0:
        wanted["RLIMIT_NPROC"] = (resource.RLIMIT_NPROC, _uid_tasks(os.geteuid()) + lim.processes)
    targets = {}
    for name, (res, value) in wanted.items():
        hard = _cap(value, resource.getrlimit(res)[1])
        targets[name] = (res, hard, hard)
    return targets


def _cpu_hard(limits: SandboxLimits) -> int:
    return _cap(limits.cpu_s * CPU_LIFETIME_JOBS, resource.getrlimit(resource.RLIMIT_CPU)[1])


def apply(spec: SandboxSpec) -> str:
    """Set every limit; the detail states the figures in force."""
    targets = _targets(spec)
    cpu_hard = _cpu_hard(spec.limits)
    cpu_soft = min(_cpu_used() + spec.limits.cpu_s, cpu_hard)
    try:
        for res, soft, hard in targets.values():
            resource.setrlimit(res, (soft, hard))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_soft, cpu_hard))
    except (OSError, ValueError) as exc:
        raise LayerUnavailable(f"setrlimit: {describe(exc)}") from exc
    value = {name: hard for name, (_res, _soft, hard) in targets.items()}
    nproc = f"NPROC {value['RLIMIT_NPROC']}" if "RLIMIT_NPROC" in value else "NPROC unset (root)"
    return (
        f"AS {value['RLIMIT_AS'] // MIB} MiB, CPU {spec.limits.cpu_s} s per job "
        f"(soft {cpu_soft} s now) within {cpu_hard} s per worker (hard), "
        f"FSIZE {value['RLIMIT_FSIZE'] // MIB} MiB, NOFILE {value['RLIMIT_NOFILE']}, CORE 0, {nproc}"
    )


def check(spec: SandboxSpec) -> str | None:
    """None when every limit is what apply() set (the CPU soft limit: finite and not above the hard one)."""
    for name, (res, soft, hard) in _targets(spec).items():
        actual = resource.getrlimit(res)
        if actual != (soft, hard):
            return f"{name} is {actual}, expected {(soft, hard)}"
    cpu_soft, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    expected_hard = _cpu_hard(spec.limits)
    if cpu_hard != expected_hard:
        return f"RLIMIT_CPU hard is {cpu_hard}, expected {expected_hard}"
    if cpu_soft == INF or cpu_soft > cpu_hard:
        return f"RLIMIT_CPU soft is {cpu_soft} (hard {cpu_hard})"
    return None


def start_job_cpu(cpu_s: int) -> None:
    """Give the job about to start cpu_s CPU seconds: soft RLIMIT_CPU = CPU used so far (rounded up) + cpu_s,
    capped at the hard limit (then the job gets less: see cpu_budget_left)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (_cap(_cpu_used() + cpu_s, hard), hard))


def cpu_budget_left() -> float:
    """CPU seconds left before the hard RLIMIT_CPU (the worker's lifetime budget) kills us; inf if none."""
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    return math.inf if hard == INF else max(0.0, hard - time.process_time())


def begin_job(limits: SandboxLimits) -> bool:
    """Per-job set-up at the start of every job: arm the job's CPU limit. Returns False when the lifetime
    budget is too low for the job to get its full cpu_s: finish this job, then have the worker recycled."""
    start_job_cpu(limits.cpu_s)
    return cpu_budget_left() >= limits.cpu_s
