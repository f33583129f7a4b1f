"""Layer "cgroup" (verify only): the coordinator put us in the cgroup dirs listed in the spec.

The coordinator creates the cgroups and moves the worker in (memory and pids limits, `cgroup.kill`); the
worker cannot do it for itself once it dropped its capabilities, and must not be trusted to. Here we only
prove it happened: our pid is listed in each dir's `cgroup.procs` (v1 and v2 alike). When that file cannot
be read we fall back to /proc/self/cgroup, whose paths are relative to each hierarchy's mount point.

The coordinator can only move us once it has our pid, i.e. after the spawn returned: apply() gives it up to
PLACEMENT_WAIT_S to do so (polling, it is usually done long before the interpreter is up).
"""

from __future__ import annotations

import os
import time

from protocol.sandbox import SandboxSpec
from worker.sandbox.errors import LayerUnavailable

PLACEMENT_WAIT_S = 2.0
POLL_S = 0.02


def _in_procs(directory: str, pid: int) -> bool | None:
    """Whether pid is in directory/cgroup.procs; None when the file cannot be read."""
    try:
        with open(os.path.join(directory, "cgroup.procs"), encoding="utf-8") as fh:
            return str(pid) in fh.read().split()
    except OSError:
        return None


def _in_proc_self_cgroup(directory: str) -> bool:
    """Whether one of our /proc/self/cgroup paths (not the root "/") is the tail of directory."""
    with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as fh:
        paths = [line.rstrip("\n").split(":", 2)[2] for line in fh if line.count(":") >= 2]
    target = directory.rstrip("/")
    return any(path not in ("", "/") and target.endswith(path.rstrip("/")) for path in paths)


def _missing(spec: SandboxSpec) -> list[str]:
    pid = os.getpid()
    missing = []
    for directory in spec.cgroup:
        found = _in_procs(directory, pid)
        if found is None:
            found = _in_proc_self_cgroup(directory)
        if not found:
            missing.append(directory)
    return missing


def apply(spec: SandboxSpec) -> str:
    """Nothing to apply: check the placement, and say where we are."""
    if not spec.cgroup:
        raise LayerUnavailable("no cgroup given by the coordinator")
    deadline = time.monotonic() + PLACEMENT_WAIT_S
    while (missing := _missing(spec)) and time.monotonic() < deadline:
        time.sleep(POLL_S)  # the coordinator writes our pid into cgroup.procs right after spawning us
    if missing:
        raise LayerUnavailable(f"pid {os.getpid()} is not in {', '.join(missing)}")
    return f"in {', '.join(spec.cgroup)}"


def check(spec: SandboxSpec) -> str | None:
    """None when we are (still) in every listed cgroup."""
    if not spec.cgroup:
        return "no cgroup given by the coordinator"
    missing = _missing(spec)
    return f"pid {os.getpid()} is not in {', '.join(missing)}" if missing else None
