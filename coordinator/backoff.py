"""Restart policy as pure logic: exponential backoff with jitter, the restart-intensity limit, and the
cool-down that gives a failed slot a trial start.

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

    Unlike supervisord's FATAL, failed is not for ever: after `cooldown_delay()` the slot gets one trial
    start (`begin_trial()`). A trial worker that dies before `stable_after` sends the slot straight back to
    failed with twice the cool-down (up to `cooldown_cap`); one that stayed up ends the trial, and from
    then on deaths are handled as usual. The cool-down has no jitter: it is long, and slots that failed
    together starting together again costs no more than the coordinator's own start-up does.
    """

    initial: float = 0.5
    cap: float = 30.0
    stable_after: float = 30.0
    max_restarts: int = 5
    window: float = 60.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0
    _restarts: deque[float] = field(default_factory=deque)
    # After rng, so that existing positional arguments keep their meaning.
    cooldown: float = 60.0
    cooldown_cap: float = 600.0
    _failed: int = field(default=0, init=False, repr=False)  # times in a row the slot went to failed
    _on_trial: bool = field(default=False, init=False, repr=False)

    def record_death(self, now: float, uptime: float) -> float | None:
        """A worker of this slot died after `uptime` seconds; return the delay before restarting it, or
        None when the slot has restarted too often and should be marked failed.

        On trial, a death before `stable_after` is None at once: the trial failed."""
        if uptime >= self.stable_after:
            # A worker that stayed up proves the slot works: a trial is over, and failures no longer
            # count as "in a row".
            self._attempt = 0
            self._failed = 0
            self._on_trial = False
        elif self._on_trial:
            self._on_trial = False
            return None
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

    def cooldown_delay(self) -> float:
        """The slot is entering failed: seconds before its trial start. Doubles each time in a row, from
        `cooldown` up to `cooldown_cap`."""
        # The exponent is bounded so a slot failing for months cannot overflow the float.
        delay = min(self.cooldown_cap, self.cooldown * 2.0 ** min(self._failed, 64))
        self._failed += 1
        return delay

    def begin_trial(self) -> None:
        """The trial start is happening: the old restarts no longer count, and the next early death
        fails the slot again."""
        self._restarts.clear()
        self._on_trial = True

    @property
    def failed_count(self) -> int:
        """How many times in a row the slot has gone to failed (0 once a worker stayed up)."""
        return self._failed

    @property
    def on_trial(self) -> bool:
        """Whether the slot is on its trial start after a cool-down."""
        return self._on_trial

    def update(self, other: RestartPolicy) -> None:
        """Take `other`'s settings (a reloaded config), keeping this slot's history."""
        for name in ("initial", "cap", "stable_after", "max_restarts", "window", "cooldown", "cooldown_cap"):
            setattr(self, name, getattr(other, name))

    def reset(self) -> None:
        """Forget history (an operator restarted the slot by hand)."""
        self._attempt = 0
        self._restarts.clear()
        self._failed = 0
        self._on_trial = False
