"""The fleet-wide restart-storm guard: pause all dispatch when the whole deployment looks broken.

One slot's breaker protects the queue from one bad worker. When many slots fail together (a broken
deployment, a missing tool, a full disk), every job would crash on whichever slot takes it and good files
would be quarantined by the hundred. So when half the slots have open breakers, or workers restart faster
than a set rate, the guard pauses dispatch for the whole fleet (health reads `unhealthy`) and lets one
probe job through every `probe_interval_s` until one succeeds.

Edge-triggered, so that it cannot trip over and over on the same old state:
  * restarts trip it on the restart that pushes the count in the window over `max_restarts`; the restart
    history is forgotten on resume, so only a fresh burst trips it again;
  * breakers trip it only when the number of open breakers rises to or above the line. After a resume the
    same open breakers do not trip it again; a breaker that opens on top of them, or the count dropping
    below the line and rising back, does. Breakers moving between OPEN and HALF_OPEN leave the count as it
    is, so their probes cannot re-trip it either.

Pure logic: no clock of its own, no I/O; every method that depends on time takes `now` from the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FleetPolicy:
    """When the fleet pauses, and how often it probes while paused.

    `open_fraction` is a fraction of all slots whose breakers are OPEN or HALF_OPEN (0 turns the rule off);
    `max_restarts` restarts are allowed within `restart_window_s` seconds, one more trips it (0 turns the
    rule off). Negative numbers, or a fraction above 1, raise ValueError.
    """

    open_fraction: float = 0.5
    max_restarts: int = 20
    restart_window_s: float = 60.0
    probe_interval_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_restarts", "restart_window_s", "probe_interval_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.open_fraction <= 1.0:
            raise ValueError(f"open_fraction must be between 0 and 1, got {self.open_fraction}")


class FleetGuard:
    """Whether any slot may be given a job, fleet-wide; checked on top of each slot's own breaker.

    While paused, `allows()` is True for exactly one probe job at a time, from `probe_interval_s` after
    the trip (or after the last failed probe). Verdicts of jobs given out before the pause are not probes
    and are ignored.
    """

    def __init__(self, policy: FleetPolicy) -> None:
        self.policy = policy
        self.paused = False
        self.reason: str | None = None
        self.trips = 0
        self._restarts: deque[float] = deque()
        self._open_count = 0  # the last count breakers_changed() heard, to see it rise
        self._next_probe_at = 0.0
        self._probing = False
        self._events: list[str] = []

    @property
    def probing(self) -> bool:
        """Whether the probe job is out."""
        return self._probing

    def restarted(self, now: float) -> None:
        """A worker of some slot was (re)started after a death."""
        self._restarts.append(now)
        self._forget_old_restarts(now)
        limit = self.policy.max_restarts
        # History is cleared on resume, so being over the limit while running means this restart crossed it.
        if limit > 0 and not self.paused and len(self._restarts) > limit:
            window = self.policy.restart_window_s
            self._trip(now, f"{len(self._restarts)} worker restarts within {window:g}s")

    def breakers_changed(self, now: float, open_count: int, total: int) -> None:
        """`open_count` of `total` slots now have OPEN or HALF_OPEN breakers."""
        rose = open_count > self._open_count
        self._open_count = open_count
        fraction = self.policy.open_fraction
        # Compare open_count/total with the fraction rather than open_count with fraction*total: 3/10 and
        # 0.3 are the same float, while 0.3*10 is 3.0000000000000004.
        if rose and fraction > 0 and total > 0 and not self.paused and open_count / total >= fraction:
            self._trip(now, f"{open_count} of {total} worker slots have open circuit breakers")

    def allows(self, now: float) -> bool:
        """May a job be dispatched now? While paused, only one probe at a time, once it is due."""
        if not self.paused:
            return True
        return not self._probing and now >= self._next_probe_at

    def dispatched(self, now: float) -> None:
        """A job was dispatched; while paused it is the probe."""
        if self.paused:
            self._probing = True

    def succeeded(self, now: float) -> None:
        """A job succeeded; if it was the probe, the fleet resumes."""
        if self.paused and self._probing:
            self._resume("probe job succeeded")

    def failed(self, now: float) -> None:
        """A job failed; if it was the probe, stay paused and wait another interval."""
        if self.paused and self._probing:
            self._probing = False
            self._next_probe_at = now + self.policy.probe_interval_s

    def released(self) -> None:
        """A dispatched job came back with no verdict: no probe is out (the next one may go when due)."""
        self._probing = False

    def resume(self, now: float, reason: str = "resumed by operator") -> None:
        """Resume dispatch by hand; nothing happens if the fleet is not paused."""
        if self.paused:
            self._resume(reason)

    def retry_in(self, now: float) -> float | None:
        """While paused, seconds until the next probe may go (0 once due, or while one is out); else None."""
        if not self.paused:
            return None
        return max(0.0, self._next_probe_at - now)

    def take_events(self) -> list[str]:
        """The "paused: ..." and "resumed: ..." lines since the last call, oldest first, for the log."""
        taken, self._events = self._events, []
        return taken

    def recent_restarts(self, now: float) -> int:
        """Restarts within the window before `now` (without forgetting any: this only reads)."""
        return sum(now - t <= self.policy.restart_window_s for t in self._restarts)

    def row(self, now: float) -> dict[str, Any]:
        """The guard for `ob-ctl` and the health report."""
        retry_in = self.retry_in(now)
        return {
            "paused": self.paused,
            "reason": self.reason,
            "retry_in_s": None if retry_in is None else round(retry_in, 3),
            "trips": self.trips,
            "recent_restarts": self.recent_restarts(now),
            "probing": self._probing,
        }

    # -- internals ---------------------------------------------------------------------------------------

    def _forget_old_restarts(self, now: float) -> None:
        # Same boundary as RestartPolicy: a restart exactly `window` seconds old still counts.
        while self._restarts and now - self._restarts[0] > self.policy.restart_window_s:
            self._restarts.popleft()

    def _trip(self, now: float, reason: str) -> None:
        self.paused = True
        self.reason = reason
        self.trips += 1
        self._probing = False
        # The first probe waits an interval too: a storm is still raging the moment it is noticed.
        self._next_probe_at = now + self.policy.probe_interval_s
        self._events.append(f"paused: {reason}")

    def _resume(self, reason: str) -> None:
        self.paused = False
        self.reason = None
        self._probing = False
        # The restarts that tripped it must not count towards the next trip; the open-breaker count is
        # kept, so only a rise from here trips it again.
        self._restarts.clear()
        self._events.append(f"resumed: {reason}")
