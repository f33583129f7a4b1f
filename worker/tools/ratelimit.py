"""Rate limiting for paid or fragile services a skill calls: at most N calls per sliding window.

Jobs beyond the limit wait their turn, they never fail: a burst of dropped files just takes longer.
The limiter keeps the times of the recent calls (a deque), so the window truly slides instead of
resetting on a fixed boundary. Clock and sleep are injected, so tests run on fake time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from protocol.skills import parse_rate

__all__ = ["SlidingWindowLimiter", "parse_rate"]

# Float arithmetic can leave a wait of ~1e-16 s after sleeping exactly the computed delay; at large
# clock values adding that to the clock changes nothing, and acquire() would spin forever.
_EPSILON = 1e-9


class SlidingWindowLimiter:
    """At most `max_calls` calls in any `window_s` seconds, waiting (never failing) beyond that."""

    def __init__(self, max_calls: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.max_calls = max_calls
        self.window_s = window_s
        self._clock = clock
        self._calls: deque[float] = deque()  # times of the calls still inside the window, oldest first

    def delay(self) -> float:
        """Seconds to wait before the next call is allowed (0.0 when allowed now); records nothing."""
        now = self._clock()
        self._forget_before(now)
        if len(self._calls) < self.max_calls:
            return 0.0
        # The call that must leave the window for a slot to free up.
        wait = self._calls[-self.max_calls] + self.window_s - now
        return wait if wait > _EPSILON else 0.0

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait until a call is allowed, record it, and return the seconds spent waiting."""
        start = self._clock()
        while (wait := self.delay()) > 0.0:
            sleep(wait)
        now = self._clock()
        self._calls.append(now)
        return now - start

    def _forget_before(self, now: float) -> None:
        # A call at t counts against the window until t + window_s, exclusive.
        while self._calls and self._calls[0] + self.window_s - now <= _EPSILON:
            self._calls.popleft()
