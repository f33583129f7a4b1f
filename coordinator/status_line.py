"""The compact status line `ob-coordinator start --status-interval N` writes to the log every N seconds:

    status: healthy | workers 4: 2 busy, 2 ready | jobs 10 queued, 2 running, 100 done | 12.5 files/s

Pure: it is given the `ob-ctl status` picture and the clock, and remembers only the previous count of
finished jobs to say the rate since the last line.
"""

from __future__ import annotations

from typing import Any


class StatusLine:
    """When the next line is due, and what it says."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0
        self._last: tuple[float, int] | None = None

    def due(self, now: float) -> bool:
        """Whether a line is due (never when the interval is 0)."""
        if self.interval_s <= 0 or now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def line(self, status: dict[str, Any], now: float) -> str:
        """The line for this picture (see the module docstring)."""
        jobs = status["jobs"]
        finished = jobs["done"] + jobs["failed"] + jobs["quarantined"]
        rate = ""
        if self._last is not None and now > self._last[0]:
            rate = f" | {(finished - self._last[1]) / (now - self._last[0]):.1f} files/s"
        self._last = (now, finished)
        workers = status["workers"]
        states = ", ".join(f"{n} {state}" for state, n in workers.items() if state != "total" and n)
        queue = ", ".join(f"{n} {state}" for state, n in jobs.items() if n) or "none"
        extra = f" | dispatch paused ({status['paused_reason']})" if status.get("paused_reason") else ""
        reasons = f" ({'; '.join(status['reasons'])})" if status.get("reasons") else ""
        return (
            f"status: {status['health']}{reasons} | workers {workers['total']}: {states or 'none'} | "
            f"jobs {queue}{rate}{extra}"
        )
