"""No process a job started outlives the job.

A skill may leave processes behind: a handler's forked children, a command's grandchild that called
`setsid` and so escaped the command's process group. After every job the worker kills whatever is left:

- everything in its own cgroup but itself (the coordinator put it there; `cgroup.procs` lists setsid'ed,
  double-forked grandchildren too);
- every descendant it can see, which without a cgroup still covers orphans, because the worker is a child
  subreaper (`PR_SET_CHILD_SUBREAPER`): a grandchild whose parent exits is re-parented to us, not to init.

Then it reaps the zombies. Runs between jobs only, so no `subprocess` call of ours is waiting on a child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

from loguru import logger

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to us; False where the kernel has no such thing."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


def leftovers(cgroup_dirs: list[str]) -> set[int]:
    """Pids of every process of ours but this one: our cgroup's members and our descendants.

    Cheap when there is nothing to find, as after almost every job: one small file (`cgroup.procs`), or
    without a cgroup one per thread of ours (`/proc/self/task/*/children`); never a scan of the whole
    process table."""
    me = os.getpid()
    pids: set[int] = set()
    if cgroup_dirs:  # every hierarchy lists the same processes, setsid'ed grandchildren included
        try:
            pids.update(int(line) for line in (Path(cgroup_dirs[0]) / "cgroup.procs").read_text().split())
            pids.discard(me)
            pids.discard(0)  # a pid from another pid namespace shows as 0 in cgroup.procs
            return pids
        except (OSError, ValueError):
            pass
    todo = _children(me)
    while todo:
        pid = todo.pop()
        if pid not in pids:
            pids.add(pid)
            todo |= _children(pid)
    pids.discard(me)
    return pids


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.update(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            pass
    return out


def kill_leftovers(cgroup_dirs: list[str], *, timeout_s: float = 2.0) -> int:
    """SIGKILL every leftover process until none is left (a fork bomb refills while we kill, and a killed
    process takes a moment to die); return how many distinct processes were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    pids = leftovers(cgroup_dirs)
    while pids and time.monotonic() < deadline:
        for pid in pids - killed:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:  # gone already, or not ours to signal
                pass
        _reap()
        time.sleep(0.002)
        pids = leftovers(cgroup_dirs)
    _reap()
    if pids:
        logger.warning("{} process(es) left by the last job would not die", len(pids))
    if killed:
        logger.info("killed {} process(es) the last job left behind", len(killed))
    return len(killed)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
