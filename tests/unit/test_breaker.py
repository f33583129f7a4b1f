"""A worker slot's circuit breaker, driven by hand-fed time (no sleeping)."""

from __future__ import annotations

import pytest

from coordinator.breaker import BreakerPolicy, CircuitBreaker, Transition
from coordinator.states import BreakerState

pytestmark = pytest.mark.timeout(10)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def breaker(**kw: float) -> CircuitBreaker:
    """A breaker with the rate rule off unless a test turns it on."""
    settings: dict[str, float] = {"failure_threshold": 3, "window": 0, "min_samples": 10, "recovery_s": 30.0}
    settings.update(kw)
    return CircuitBreaker(BreakerPolicy(**settings))  # type: ignore[arg-type]


def opened(now: float = 0.0, **kw: float) -> CircuitBreaker:
    """A breaker that opened at `now` on three consecutive failures."""
    b = breaker(**kw)
    for _ in range(3):
        b.failed(now, "worker crashed")
    assert b.state is OPEN
    return b


def half_open(**kw: float) -> CircuitBreaker:
    """A breaker that opened at 0 and moved to HALF_OPEN at 30, with no probe out yet."""
    b = opened(**kw)
    assert b.allows(30.0)
    assert b.state is HALF_OPEN
    return b


# -- opening ---------------------------------------------------------------------------------------------


def test_consecutive_failures_open_it_at_the_threshold() -> None:
    b = breaker(failure_threshold=3)
    b.failed(0.0, "worker crashed")
    b.failed(1.0, "heartbeat lost")
    assert b.state is CLOSED and b.allows(1.0)
    b.failed(2.0, "job timed out")
    assert b.state is OPEN and not b.allows(2.0)
    [t] = b.take_transitions()
    assert (t.old, t.new, t.at) == (CLOSED, OPEN, 2.0)
    assert t.reason == "3 consecutive failures; last: job timed out"


def test_interleaved_successes_do_not_open_it_by_count() -> None:
    b = breaker(failure_threshold=3)
    for i in range(10):
        b.failed(float(i), "worker crashed")
        b.failed(float(i), "worker crashed")
        b.succeeded(float(i))
    assert b.state is CLOSED
    assert b.row(10.0)["consecutive_failures"] == 0


def test_a_zero_threshold_never_opens_by_count() -> None:
    b = breaker(failure_threshold=0)
    for i in range(100):
        b.failed(float(i), "worker crashed")
    assert b.state is CLOSED
    assert b.row(100.0)["consecutive_failures"] == 100


def test_the_failure_rate_opens_it_once_the_window_has_min_samples() -> None:
    # Count rule off: only the rate can open it. Alternate F, S so no run is long.
    b = breaker(failure_threshold=0, failure_rate=0.5, window=10, min_samples=10)
    for i in range(4):
        b.failed(float(i), "worker crashed")
        b.succeeded(float(i))
    b.failed(4.0, "worker crashed")  # 5 of 9: above 50%, but only 9 samples
    assert b.state is CLOSED
    b.failed(5.0, "heartbeat lost")  # 6 of 10
    assert b.state is OPEN
    [t] = b.take_transitions()
    assert t.reason == "failure rate 60% over the last 10 jobs; last: heartbeat lost"


def test_the_rate_must_be_above_the_limit_not_at_it() -> None:
    b = breaker(failure_threshold=0, failure_rate=0.5, window=10, min_samples=10)
    for i in range(5):
        b.failed(float(i), "worker crashed")
        b.succeeded(float(i))
    assert b.row(5.0)["window_failures"] == 5 and b.row(5.0)["window_size"] == 10
    assert b.state is CLOSED


def test_the_window_forgets_old_outcomes() -> None:
    b = breaker(failure_threshold=0, failure_rate=0.5, window=4, min_samples=4)
    b.failed(0.0, "worker crashed")
    b.failed(1.0, "worker crashed")
    for i in range(4):
        b.succeeded(2.0 + i)  # pushes both failures out
    row = b.row(6.0)
    assert (row["window_failures"], row["window_size"]) == (0, 4)
    b.failed(7.0, "worker crashed")
    b.failed(8.0, "worker crashed")  # 2 of 4: not above 50%
    assert b.state is CLOSED
    b.failed(9.0, "worker crashed")
    assert b.state is OPEN


def test_a_window_smaller_than_min_samples_turns_the_rate_rule_off() -> None:
    b = breaker(failure_threshold=0, failure_rate=0.1, window=5, min_samples=10)
    for i in range(50):
        b.failed(float(i), "worker crashed")
    assert b.state is CLOSED


@pytest.mark.parametrize(
    "bad",
    [{"failure_threshold": -1}, {"failure_rate": 1.5}, {"failure_rate": -0.1}, {"recovery_s": -1.0}],
)
def test_nonsense_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


# -- open, and the recovery timer ------------------------------------------------------------------------


def test_it_stays_open_until_the_recovery_time_and_says_how_long() -> None:
    b = opened(now=100.0, recovery_s=30.0)
    assert b.retry_in(100.0) == 30.0
    assert not b.allows(129.9)
    assert b.retry_in(129.5) == pytest.approx(0.5)
    assert b.row(129.5)["retry_in_s"] == 0.5
    assert b.retry_in(200.0) == 0.0  # overdue, still OPEN until someone asks: never negative
    assert b.allows(130.0)
    assert b.state is HALF_OPEN and b.retry_in(130.0) is None


def test_failures_while_open_do_not_extend_the_timer() -> None:
    b = opened(now=0.0, recovery_s=30.0)
    for t in (10.0, 20.0, 29.0):
        b.failed(t, "worker crashed at idle")
    assert b.state is OPEN
    assert b.retry_in(29.0) == pytest.approx(1.0)
    assert b.allows(30.0)
    assert b.row(30.0)["opened"] == 1


def test_a_success_while_open_is_a_late_answer_and_changes_nothing() -> None:
    b = opened()
    b.take_transitions()
    b.succeeded(5.0)
    assert b.state is OPEN and b.take_transitions() == []


def test_retry_in_is_none_unless_open() -> None:
    b = breaker()
    assert b.retry_in(0.0) is None
    assert b.row(0.0)["retry_in_s"] is None


# -- half open: exactly one probe ------------------------------------------------------------------------


def test_half_open_admits_exactly_one_probe() -> None:
    b = half_open()
    assert b.allows(30.0)  # still no probe out: asking twice does not use it up
    b.dispatched(30.0)
    assert b.probing and b.row(30.0)["probing"] is True
    assert not b.allows(31.0)
    assert not b.allows(1000.0)


def test_a_successful_probe_closes_it_and_clears_the_history() -> None:
    b = half_open()
    b.dispatched(30.0)
    b.succeeded(35.0)
    assert b.state is CLOSED and b.allows(35.0)
    row = b.row(35.0)
    assert (row["consecutive_failures"], row["window_size"], row["probing"]) == (0, 0, False)
    # The old failures are forgotten: it takes a full new run to open it again.
    b.failed(36.0, "worker crashed")
    b.failed(37.0, "worker crashed")
    assert b.state is CLOSED


def test_a_success_in_half_open_without_a_probe_does_not_close_it() -> None:
    b = half_open()
    b.succeeded(31.0)
    assert b.state is HALF_OPEN


def test_a_failed_probe_reopens_it_with_a_fresh_timer() -> None:
    b = half_open(recovery_s=30.0)
    b.dispatched(30.0)
    b.failed(40.0, "job timed out")
    assert b.state is OPEN and not b.probing
    assert not b.allows(60.0)  # the old timer (0 + 30) would have let it through long ago
    assert b.retry_in(60.0) == pytest.approx(10.0)
    assert b.allows(70.0) and b.state is HALF_OPEN
    assert b.take_transitions()[-2].reason == "probe failed: job timed out"
    assert b.row(70.0)["opened"] == 2


def test_released_frees_the_probe() -> None:
    b = half_open()
    b.dispatched(30.0)
    assert not b.allows(31.0)
    b.released()
    assert b.state is HALF_OPEN and b.allows(31.0)


# -- reset and bookkeeping -------------------------------------------------------------------------------


def test_reset_closes_it_and_forgets_everything() -> None:
    b = opened(now=0.0)
    b.take_transitions()
    b.reset(5.0)
    assert b.state is CLOSED and b.allows(5.0)
    assert b.take_transitions() == [Transition(OPEN, CLOSED, 5.0, "reset by operator")]
    assert b.row(5.0)["consecutive_failures"] == 0
    b.failed(6.0, "worker crashed")
    b.failed(7.0, "worker crashed")
    assert b.state is CLOSED


def test_reset_of_a_closed_breaker_clears_history_without_a_transition() -> None:
    b = breaker()
    b.failed(0.0, "worker crashed")
    b.failed(1.0, "worker crashed")
    b.reset(2.0, "slot restarted by hand")
    assert b.take_transitions() == []
    b.failed(3.0, "worker crashed")
    assert b.state is CLOSED


def test_every_transition_is_recorded_and_counted() -> None:
    b = opened(now=0.0)
    b.allows(30.0)
    b.dispatched(30.0)
    b.failed(31.0, "worker crashed")
    b.allows(61.0)
    b.dispatched(61.0)
    b.succeeded(62.0)
    taken = b.take_transitions()
    assert [(t.old, t.new, t.at) for t in taken] == [
        (CLOSED, OPEN, 0.0),
        (OPEN, HALF_OPEN, 30.0),
        (HALF_OPEN, OPEN, 31.0),
        (OPEN, HALF_OPEN, 61.0),
        (HALF_OPEN, CLOSED, 62.0),
    ]
    assert taken[1].reason == "recovery time passed"
    assert b.take_transitions() == []  # taken once
    assert b.transitions == {
        "closed->open": 1,
        "open->half_open": 2,
        "half_open->open": 1,
        "half_open->closed": 1,
    }
    assert b.row(62.0)["opened"] == 2


def test_row_reports_the_counts() -> None:
    b = breaker(failure_threshold=5, window=20, min_samples=10)
    b.succeeded(0.0)
    b.failed(1.0, "worker crashed")
    b.failed(2.0, "worker crashed")
    assert b.row(2.0) == {
        "state": "closed",
        "retry_in_s": None,
        "consecutive_failures": 2,
        "window_failures": 2,
        "window_size": 3,
        "opened": 0,
        "probing": False,
    }
