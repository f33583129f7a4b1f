"""Tool breakers and rate limits, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from worker.tools.breaker import Breakers, BreakerState, ToolBreaker
from worker.tools.ratelimit import SlidingWindowLimiter, parse_rate


class FakeClock:
    """Hand-fed monotonic time; call it like time.monotonic, move it with advance()."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s

    def sleep(self, s: float) -> None:
        """A fake time.sleep: the clock moves, the test does not wait."""
        self.sleeps.append(s)
        self.advance(s)


def opened_breaker(clock: FakeClock, threshold: int = 3, cooldown: float = 30.0) -> ToolBreaker:
    b = ToolBreaker(failure_threshold=threshold, cooldown_s=cooldown, clock=clock)
    for _ in range(threshold):
        b.failure()
    assert b.state is BreakerState.OPEN
    return b


# --- ToolBreaker -----------------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    b = ToolBreaker(failure_threshold=3, cooldown_s=30.0, clock=clock)
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()


def test_a_success_in_between_resets_the_failure_count() -> None:
    b = ToolBreaker(failure_threshold=3, cooldown_s=30.0, clock=FakeClock())
    b.failure()
    b.failure()
    b.success()
    assert b.failures == 0
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN


def test_breaker_stays_open_during_the_cooldown() -> None:
    clock = FakeClock()
    b = opened_breaker(clock, cooldown=30.0)
    for _ in range(3):
        clock.advance(9.99)
        assert not b.allow()
        assert b.state is BreakerState.OPEN


def test_exactly_one_probe_in_half_open() -> None:
    clock = FakeClock()
    b = opened_breaker(clock, cooldown=30.0)
    clock.advance(30.0)
    assert b.allow() is True
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() is False
    clock.advance(1000.0)
    assert b.allow() is False, "still waiting on the probe, however long it takes"


def test_probe_success_closes_the_breaker() -> None:
    clock = FakeClock()
    b = opened_breaker(clock)
    clock.advance(30.0)
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.failures == 0 and b.retry_at is None
    assert b.allow() and b.allow()


def test_probe_failure_reopens_with_a_fresh_cooldown() -> None:
    clock = FakeClock(now=1000.0)
    b = opened_breaker(clock, cooldown=30.0)
    clock.advance(45.0)  # probe goes out late, at 1045
    assert b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN
    assert b.retry_at == 1075.0
    clock.advance(29.0)
    assert not b.allow()
    clock.advance(1.0)
    assert b.allow()
    assert b.state is BreakerState.HALF_OPEN


def test_retry_at_values() -> None:
    clock = FakeClock(now=500.0)
    b = ToolBreaker(failure_threshold=2, cooldown_s=10.0, clock=clock)
    assert b.retry_at is None
    b.failure()
    assert b.retry_at is None
    clock.advance(3.0)
    b.failure()
    assert b.retry_at == 513.0
    clock.advance(10.0)
    assert b.allow()
    assert b.retry_at is None, "a probe is out: no next probe time until it reports"
    b.success()
    assert b.retry_at is None


def test_late_failure_while_open_does_not_push_the_probe_back() -> None:
    clock = FakeClock(now=0.0)
    b = opened_breaker(clock, cooldown=30.0)
    clock.advance(20.0)
    b.failure()  # a call allowed before the breaker opened reports late
    assert b.state is BreakerState.OPEN and b.retry_at == 30.0


def test_breaker_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        ToolBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown_s"):
        ToolBreaker(cooldown_s=-1.0)


# --- Breakers registry -----------------------------------------------------------------------------------


def test_registry_creates_one_breaker_per_tool_on_demand() -> None:
    reg = Breakers(failure_threshold=2, cooldown_s=5.0, clock=FakeClock())
    assert reg.snapshot() == {}
    rg = reg.for_tool("rg")
    assert reg.for_tool("rg") is rg
    grep = reg.for_tool("grep")
    assert grep is not rg
    assert rg.failure_threshold == 2 and rg.cooldown_s == 5.0
    rg.failure()
    rg.failure()
    assert rg.state is BreakerState.OPEN
    assert grep.state is BreakerState.CLOSED and grep.allow()


def test_registry_snapshot_content() -> None:
    clock = FakeClock(now=100.0)
    reg = Breakers(failure_threshold=2, cooldown_s=30.0, clock=clock)
    reg.for_tool("rg").failure()
    reg.for_tool("rg").failure()
    reg.for_tool("grep").failure()
    clock.advance(12.0)
    assert reg.snapshot() == {
        "grep": {"state": "closed", "failures": 1, "retry_in_s": None},
        "rg": {"state": "open", "failures": 2, "retry_in_s": 18.0},
    }
    clock.advance(100.0)
    assert reg.snapshot()["rg"]["retry_in_s"] == 0.0, "overdue probes read 0, never negative"
    assert reg.for_tool("rg").allow()
    assert reg.snapshot()["rg"] == {"state": "half_open", "failures": 2, "retry_in_s": None}


# --- SlidingWindowLimiter --------------------------------------------------------------------------------


def test_limiter_allows_max_calls_at_once_then_computes_the_exact_delay() -> None:
    clock = FakeClock(now=0.0)
    lim = SlidingWindowLimiter(max_calls=3, window_s=10.0, clock=clock)
    for _ in range(3):
        assert lim.delay() == 0.0
        assert lim.acquire(sleep=clock.sleep) == 0.0
    assert clock.sleeps == []
    assert lim.delay() == 10.0
    clock.advance(4.0)
    assert lim.delay() == 6.0
    assert lim.delay() == 6.0, "delay() records nothing"


def test_limiter_window_slides_as_old_calls_expire() -> None:
    clock = FakeClock(now=0.0)
    lim = SlidingWindowLimiter(max_calls=2, window_s=10.0, clock=clock)
    lim.acquire(sleep=clock.sleep)  # t=0
    clock.advance(4.0)
    lim.acquire(sleep=clock.sleep)  # t=4
    assert lim.delay() == 6.0  # the t=0 call leaves the window at t=10
    clock.advance(6.0)
    assert lim.delay() == 0.0
    lim.acquire(sleep=clock.sleep)  # t=10
    assert lim.delay() == 4.0  # now the t=4 call is the oldest one inside the window
    clock.advance(100.0)
    assert lim.delay() == 0.0
    lim.acquire(sleep=clock.sleep)
    assert lim.delay() == 0.0, "calls long gone must not count"


def test_acquire_waits_via_the_injected_sleep_and_returns_the_wait() -> None:
    clock = FakeClock(now=0.0)
    lim = SlidingWindowLimiter(max_calls=2, window_s=60.0, clock=clock)
    assert lim.acquire(sleep=clock.sleep) == 0.0
    clock.advance(15.0)
    assert lim.acquire(sleep=clock.sleep) == 0.0
    waited = lim.acquire(sleep=clock.sleep)  # third call: waits for the t=0 one to expire
    assert waited == 45.0
    assert clock.sleeps == [45.0]
    assert clock.now == 60.0
    waited = lim.acquire(sleep=clock.sleep)  # fourth: waits for the t=15 one
    assert waited == 15.0
    assert clock.now == 75.0


def test_acquire_terminates_despite_float_rounding_at_large_clock_values() -> None:
    clock = FakeClock(now=1e9 + 0.1)
    lim = SlidingWindowLimiter(max_calls=1, window_s=0.3, clock=clock)
    lim.acquire(sleep=clock.sleep)
    waited = lim.acquire(sleep=clock.sleep)
    assert waited == pytest.approx(0.3)
    assert len(clock.sleeps) <= 2


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        SlidingWindowLimiter(max_calls=0, window_s=1.0)
    with pytest.raises(ValueError, match="window_s"):
        SlidingWindowLimiter(max_calls=1, window_s=0.0)


# --- parse_rate ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60/min", (60, 60.0)),
        ("10/s", (10, 1.0)),
        ("10/sec", (10, 1.0)),
        ("100/hour", (100, 3600.0)),
        ("5/2s", (5, 2.0)),
        ("1000/day", (1000, 86400.0)),
        (" 30 / 5min ", (30, 300.0)),
        ("2/MIN", (2, 60.0)),
    ],
)
def test_parse_rate_accepts_the_documented_forms(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text", ["0/min", "-1/s", "abc", "5/fortnight", "60 per minute", "", "5/0s", "/min", "5/", "1.5/s"]
)
def test_parse_rate_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"^rate_limit ") as err:
        parse_rate(text)
    assert "\n" not in str(err.value)


def test_parse_rate_message_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as err:
        parse_rate("60 per minute")
    assert str(err.value) == "rate_limit '60 per minute' is not N/s, N/min, N/hour or N/day"
