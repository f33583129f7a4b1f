"""Circuit breakers for the external tools one worker runs (ripgrep, grep, user commands).

A tool that keeps failing (missing binary, crashed service, broken config) should not be hammered by
every job: after `failure_threshold` consecutive failures its breaker opens and calls are refused at
once; after `cooldown_s` one probe call is let through, and its outcome closes or reopens the breaker.

Pure policy over an injected clock: nothing here sleeps, spawns or logs, so tests drive it with a fake
clock. One worker runs one job at a time, so there is no locking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a breaker is: letting calls through, refusing them, or waiting on a single probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ToolBreaker:
    """The circuit breaker for one external tool.

    Callers ask `allow()` before running the tool and report the outcome with `success()` or
    `failure()`. The OPEN -> HALF_OPEN move happens lazily, inside `allow()`, when the cooldown is over:
    `state` reads OPEN until someone actually asks to call the tool.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must not be negative, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0  # consecutive failures since the last success
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def retry_at(self) -> float | None:
        """Clock time from which the next probe is let through; None unless the breaker is OPEN."""
        if self._state is BreakerState.OPEN and self._opened_at is not None:
            return self._opened_at + self.cooldown_s
        return None

    def allow(self) -> bool:
        """Whether the tool may be called now. In HALF_OPEN this is True exactly once (the probe)."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            retry_at = self.retry_at
            if retry_at is not None and self._clock() >= retry_at:
                # The probe is this very call; everyone else waits for its verdict.
                self._state = BreakerState.HALF_OPEN
                return True
            return False
        # HALF_OPEN: a probe is already out, a second one would defeat the point of probing.
        return False

    def success(self) -> None:
        """The call worked: the tool is healthy again, forget past failures."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        """The call failed: count it, and open (or reopen) the breaker when warranted."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN:
            # The probe failed: the tool is still broken, give it a whole new cooldown.
            self._open()
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open()
        # OPEN: a late report from a call let through before the breaker opened; it must not push
        # the probe further away, so the cooldown is left alone.

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()


class Breakers:
    """The breakers of one worker, one per tool name, created on first use with shared settings."""

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._by_tool: dict[str, ToolBreaker] = {}

    def for_tool(self, name: str) -> ToolBreaker:
        """The breaker of tool `name`, created CLOSED the first time it is asked for."""
        breaker = self._by_tool.get(name)
        if breaker is None:
            breaker = ToolBreaker(self.failure_threshold, self.cooldown_s, self._clock)
            self._by_tool[name] = breaker
        return breaker

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Plain data for heartbeats and logs: state, consecutive failures, seconds until the next probe."""
        now = self._clock()
        out: dict[str, dict[str, object]] = {}
        for name, breaker in sorted(self._by_tool.items()):
            retry_at = breaker.retry_at
            out[name] = {
                "state": str(breaker.state),
                "failures": breaker.failures,
                "retry_in_s": None if retry_at is None else max(0.0, retry_at - now),
            }
        return out
