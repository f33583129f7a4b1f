"""Is a silent worker hung, or busy? Pure logic over what psutil sees from outside, with `now` passed in.

Python's `re` and many C extensions hold the GIL, so a busy worker can miss heartbeats (ARCHITECTURE
section 2). Silence alone is not proof:

    stopped (SIGSTOP, tracing stop)          → hung
    zombie / dead                            → not our call: the exit arrives through the pidfd
    idle and silent                          → hung
    busy, CPU time still climbing            → busy: wait, the job's deadline decides
    busy, no CPU progress for `limit` s      → hung
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

STOPPED = frozenset({psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP})
GONE = frozenset({psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})

#: CPU seconds that count as progress between two looks (clock ticks are 10 ms).
PROGRESS_S = 0.01


@dataclass
class SilenceWatch:
    """What we saw of one worker since it fell silent; reset when it speaks again."""

    cpu: float | None = None
    since: float | None = None

    def reset(self) -> None:
        """The worker spoke."""
        self.cpu = self.since = None

    def judge(self, *, status: str, cpu: float, busy: bool, now: float, limit: float) -> str | None:
        """A reason to call the worker hung, or None to keep waiting."""
        if status in STOPPED:
            return "process is stopped"
        if status in GONE:
            return None
        if not busy:
            return "idle and not answering"
        if self.cpu is None or cpu > self.cpu + PROGRESS_S:
            self.cpu, self.since = cpu, now
            return None
        if self.since is not None and now - self.since >= limit:
            return "busy with no CPU progress"
        return None
