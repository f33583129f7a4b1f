"""Restart policy as pure logic: exponential backoff with jitter, and the restart-intensity limit.

Nothing here sleeps or reads a clock of its own: callers pass `now`, so tests drive time by hand.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Decides how long a slot waits before its next start, and when it has failed for good.

    Delay doubles from `initial` up to `cap` with full jitter in [delay/2, delay] (so slots that died
    together do not restart in lockstep), and resets once a worker has stayed up `stable_after` seconds.
    More than `max_restarts` restarts within `window` seconds means the slot is failed
    (supervisord's FATAL, OTP's restart intensity).
    """

    initial: float = 0.5
    cap: float = 30.0
    stable_after: float = 30.0
    max_restarts: int = 5
    window: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0
    _restarts: deque[float] = field(default_factory=deque)

    def record_death(self, now: float, uptime: float) -> float | None:
        """A worker of this slot died after `uptime` seconds; return the delay before restarting it, or
        None when the slot has restarted too often and should be marked failed."""
        if uptime >= self.stable_after:
            self._attempt = 0
        while self._restarts and now - self._restarts[0] > self.window:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return None
        self._restarts.append(now)
        delay = min(self.cap, self.initial * (2**self._attempt))
        self._attempt += 1
        return self.rng.uniform(delay / 2, delay) if delay > 0 else 0.0

    @property
    def recent_restarts(self) -> int:
        """Restarts counted in the current window."""
        return len(self._restarts)

    def reset(self) -> None:
        """Forget history (an operator restarted the slot by hand)."""
        self._attempt = 0
        self._restarts.clear()
