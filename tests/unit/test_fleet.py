"""The fleet-wide restart-storm guard, driven by hand-fed time (no sleeping)."""

from __future__ import annotations

import pytest

from coordinator.fleet import FleetGuard, FleetPolicy

pytestmark = pytest.mark.timeout(10)


def guard(**kw: float) -> FleetGuard:
    return FleetGuard(FleetPolicy(**kw))  # type: ignore[arg-type]


def storm(g: FleetGuard, now: float) -> None:
    """Trip `g` at `now` by four of eight breakers opening."""
    for n in range(1, 5):
        g.breakers_changed(now, n, 8)
    assert g.paused


# -- tripping --------------------------------------------------------------------------------------------


def test_it_trips_on_the_restart_that_crosses_the_rate() -> None:
    g = guard(max_restarts=3, restart_window_s=60.0)
    for t in (0.0, 1.0, 2.0):
        g.restarted(t)
    assert not g.paused and g.allows(2.0)
    g.restarted(3.0)
    assert g.paused and not g.allows(3.0)
    assert g.reason == "4 worker restarts within 60s"
    assert g.trips == 1
    assert g.take_events() == ["paused: 4 worker restarts within 60s"]
    assert g.take_events() == []


def test_restarts_spread_out_over_time_do_not_trip_it() -> None:
    g = guard(max_restarts=3, restart_window_s=10.0)
    for t in range(0, 100, 4):
        g.restarted(float(t))
    assert not g.paused
    assert g.row(96.0)["recent_restarts"] == 3


def test_it_trips_when_the_open_fraction_is_reached() -> None:
    g = guard(open_fraction=0.5)
    for n in (1, 2, 3):
        g.breakers_changed(0.0, n, 8)
    assert not g.paused
    g.breakers_changed(5.0, 4, 8)
    assert g.paused
    assert g.reason == "4 of 8 worker slots have open circuit breakers"


def test_a_fraction_that_is_not_a_round_float_still_trips_exactly_at_the_line() -> None:
    g = guard(open_fraction=0.3)
    g.breakers_changed(0.0, 2, 10)
    assert not g.paused
    g.breakers_changed(0.0, 3, 10)  # 0.3 * 10 is 3.0000000000000004 in floats
    assert g.paused


def test_zero_turns_both_rules_off() -> None:
    g = guard(open_fraction=0.0, max_restarts=0)
    for t in range(1000):
        g.restarted(float(t) / 1000)
    g.breakers_changed(1.0, 8, 8)
    assert not g.paused and g.trips == 0


def test_no_slots_never_trips() -> None:
    g = guard()
    g.breakers_changed(0.0, 0, 0)
    assert not g.paused


# -- paused: one probe per interval ----------------------------------------------------------------------


def test_while_paused_one_probe_is_allowed_after_the_interval() -> None:
    g = guard(probe_interval_s=10.0)
    storm(g, now=100.0)
    assert not g.allows(100.0) and not g.allows(109.9)
    assert g.retry_in(105.0) == pytest.approx(5.0)
    assert g.allows(110.0)
    assert g.allows(110.0)  # asking does not use it up
    g.dispatched(110.0)
    assert g.probing and not g.allows(110.0) and not g.allows(500.0)
    assert g.retry_in(120.0) == 0.0


def test_a_successful_probe_resumes_dispatch() -> None:
    g = guard(max_restarts=2, probe_interval_s=10.0)
    for t in (0.0, 1.0, 2.0):
        g.restarted(t)
    g.take_events()
    g.dispatched(12.0)
    g.succeeded(13.0)
    assert not g.paused and g.reason is None and g.allows(13.0)
    assert g.retry_in(13.0) is None
    assert g.take_events() == ["resumed: probe job succeeded"]
    assert g.row(13.0)["recent_restarts"] == 0  # the storm's restarts are forgotten


def test_a_failed_probe_waits_another_interval() -> None:
    g = guard(probe_interval_s=10.0)
    storm(g, now=0.0)
    g.dispatched(10.0)
    g.failed(25.0)
    assert g.paused and not g.probing
    assert not g.allows(34.9)
    assert g.retry_in(30.0) == pytest.approx(5.0)
    assert g.allows(35.0)


def test_released_frees_the_probe_without_delaying_the_next() -> None:
    g = guard(probe_interval_s=10.0)
    storm(g, now=0.0)
    g.dispatched(10.0)
    g.released()
    assert g.paused and g.allows(11.0)


def test_verdicts_of_jobs_given_out_before_the_pause_are_not_probes() -> None:
    g = guard(probe_interval_s=10.0)
    storm(g, now=0.0)
    g.succeeded(1.0)
    assert g.paused
    g.failed(2.0)
    assert g.allows(10.0)  # the next-probe time did not move


def test_outside_a_pause_verdicts_change_nothing() -> None:
    g = guard()
    g.dispatched(0.0)
    g.failed(1.0)
    g.succeeded(2.0)
    assert not g.paused and g.allows(2.0) and g.take_events() == []


# -- edge-triggered: no re-trip on the same old state ----------------------------------------------------


def test_after_resuming_the_same_open_breakers_do_not_trip_it_again() -> None:
    g = guard(open_fraction=0.5, probe_interval_s=10.0)
    storm(g, now=0.0)
    g.dispatched(10.0)
    g.succeeded(11.0)
    assert not g.paused
    g.breakers_changed(12.0, 4, 8)  # told again, nothing new
    g.breakers_changed(13.0, 4, 8)
    assert not g.paused and g.trips == 1


def test_a_new_breaker_opening_at_the_line_trips_it_again() -> None:
    g = guard(open_fraction=0.5, probe_interval_s=10.0)
    storm(g, now=0.0)
    g.dispatched(10.0)
    g.succeeded(11.0)
    g.breakers_changed(20.0, 5, 8)
    assert g.paused and g.trips == 2


def test_dropping_below_the_line_and_crossing_again_trips_it_again() -> None:
    g = guard(open_fraction=0.5, probe_interval_s=10.0)
    storm(g, now=0.0)
    g.dispatched(10.0)
    g.succeeded(11.0)
    g.breakers_changed(20.0, 3, 8)
    assert not g.paused
    g.breakers_changed(30.0, 4, 8)
    assert g.paused and g.trips == 2


def test_after_resuming_it_takes_a_fresh_burst_of_restarts_to_trip() -> None:
    g = guard(max_restarts=3, restart_window_s=60.0, probe_interval_s=10.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        g.restarted(t)
    g.dispatched(13.0)
    g.succeeded(14.0)
    for t in (15.0, 16.0, 17.0):
        g.restarted(t)  # with the old four still counted this would trip at once
    assert not g.paused
    g.restarted(18.0)
    assert g.paused and g.trips == 2


def test_changes_while_paused_do_not_count_as_new_trips() -> None:
    g = guard(max_restarts=2, open_fraction=0.5)
    storm(g, now=0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        g.restarted(t)
    g.breakers_changed(5.0, 8, 8)
    assert g.trips == 1 and g.reason == "4 of 8 worker slots have open circuit breakers"
    assert g.take_events() == ["paused: 4 of 8 worker slots have open circuit breakers"]


# -- operator and reporting ------------------------------------------------------------------------------


def test_an_operator_can_resume_it() -> None:
    g = guard(max_restarts=1)
    g.restarted(0.0)
    g.restarted(1.0)
    g.take_events()
    g.resume(2.0)
    assert not g.paused and g.allows(2.0)
    assert g.take_events() == ["resumed: resumed by operator"]
    g.resume(3.0)  # not paused: nothing to say
    assert g.take_events() == []


def test_row_reports_the_guard() -> None:
    g = guard(max_restarts=1, restart_window_s=60.0, probe_interval_s=10.0)
    g.restarted(0.0)
    assert g.row(0.0) == {
        "paused": False,
        "reason": None,
        "retry_in_s": None,
        "trips": 0,
        "recent_restarts": 1,
        "probing": False,
    }
    g.restarted(1.0)
    row = g.row(4.0)
    assert (row["paused"], row["retry_in_s"], row["trips"], row["recent_restarts"]) == (True, 7.0, 1, 2)
    assert g.row(100.0)["recent_restarts"] == 0


@pytest.mark.parametrize("bad", [{"open_fraction": 1.5}, {"max_restarts": -1}, {"probe_interval_s": -1.0}])
def test_nonsense_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FleetPolicy(**bad)  # type: ignore[arg-type]
