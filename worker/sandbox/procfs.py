"""Read our own entries in /proc: how many threads we have, and per-thread status fields.

Several layers are per *thread* in the kernel (capabilities, no_new_privs, seccomp, the network namespace,
Landlock), so their checks look at every task of the process, not only at /proc/self/status (which shows the
main thread).
"""

from __future__ import annotations

import os

TASK_DIR = "/proc/self/task"


def thread_ids() -> list[int]:
    """The ids of every thread of this process."""
    return sorted(int(name) for name in os.listdir(TASK_DIR))


def thread_count() -> int:
    """How many threads this process has right now (1 means only the caller)."""
    return len(os.listdir(TASK_DIR))


def status_fields(path: str = "/proc/thread-self/status") -> dict[str, str]:
    """The `Key:\tvalue` lines of a status file (by default the calling thread's: /proc/self/status shows
    the main thread's)."""
    fields: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value.strip()
    return fields


def task_status(field: str) -> dict[int, str]:
    """`field` from the status of every thread, keyed by thread id (threads that just exited are skipped)."""
    values: dict[int, str] = {}
    for tid in thread_ids():
        try:
            values[tid] = status_fields(f"{TASK_DIR}/{tid}/status").get(field, "")
        except FileNotFoundError:  # the thread exited between listing and reading
            continue
    return values


def task_netns() -> dict[int, int]:
    """The network namespace inode of every thread (unshare moves only the calling thread)."""
    inodes: dict[int, int] = {}
    for tid in thread_ids():
        try:
            inodes[tid] = os.stat(f"{TASK_DIR}/{tid}/ns/net").st_ino
        except FileNotFoundError:
            continue
    return inodes
