"""Restart policy, driven by hand-fed time (no sleeping)."""

from __future__ import annotations

import random

from coordinator.backoff import RestartPolicy


def policy(**kw: float) -> RestartPolicy:
    return RestartPolicy(rng=random.Random(1), **kw)  # type: ignore[arg-type]


def test_delay_doubles_with_jitter_up_to_the_cap() -> None:
    p = policy(initial=0.5, cap=4.0, max_restarts=100, window=1000)
    bounds = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for i, top in enumerate(bounds):
        delay = p.record_death(now=float(i), uptime=0.1)
        assert delay is not None and top / 2 <= delay <= top


def test_stable_uptime_resets_the_delay() -> None:
    p = policy(initial=1.0, cap=60, stable_after=30, max_restarts=100, window=1000)
    for t in range(4):
        p.record_death(now=float(t), uptime=1)
    delay = p.record_death(now=100.0, uptime=45.0)
    assert delay is not None and 0.5 <= delay <= 1.0


def test_more_than_max_restarts_in_the_window_fails_the_slot() -> None:
    p = policy(max_restarts=5, window=60)
    assert all(p.record_death(now=float(t), uptime=0.1) is not None for t in range(5))
    assert p.record_death(now=5.0, uptime=0.1) is None


def test_restarts_outside_the_window_are_forgotten() -> None:
    p = policy(max_restarts=2, window=10)
    assert p.record_death(now=0.0, uptime=0.1) is not None
    assert p.record_death(now=1.0, uptime=0.1) is not None
    assert p.record_death(now=20.0, uptime=0.1) is not None
    assert p.recent_restarts == 1


# -- failed is not for ever: cool-down, then a trial start ------------------------------------------------


def fail(p: RestartPolicy, now: float) -> None:
    """Restart `p` until it gives up, as a slot that crashes at once would."""
    for i in range(p.max_restarts + 1):
        if p.record_death(now=now + i * 0.01, uptime=0.1) is None:
            return
    raise AssertionError("the slot never failed")


def test_the_cooldown_doubles_each_time_in_a_row_up_to_the_cap() -> None:
    p = policy(cooldown=60, cooldown_cap=600)
    assert [p.cooldown_delay() for _ in range(7)] == [60, 120, 240, 480, 600, 600, 600]
    assert p.failed_count == 7


def test_a_long_failing_slot_does_not_overflow_the_cooldown() -> None:
    p = policy(cooldown=60, cooldown_cap=600)
    for _ in range(5000):
        delay = p.cooldown_delay()
    assert delay == 600


def test_the_trial_start_clears_the_restart_window() -> None:
    p = policy(max_restarts=2, window=60, stable_after=30)
    fail(p, now=0.0)
    p.cooldown_delay()
    p.begin_trial()
    assert p.on_trial and p.recent_restarts == 0


def test_an_early_death_on_trial_goes_straight_back_to_failed() -> None:
    p = policy(max_restarts=5, window=60, stable_after=30, cooldown=60, cooldown_cap=600)
    fail(p, now=0.0)
    assert p.cooldown_delay() == 60
    p.begin_trial()
    # Only one restart in the (cleared) window: without the trial this would be a plain backoff.
    assert p.record_death(now=61.0, uptime=5.0) is None
    assert not p.on_trial
    assert p.cooldown_delay() == 120
    assert p.failed_count == 2


def test_a_stable_trial_ends_the_trial_and_resets_the_doubling() -> None:
    p = policy(initial=1.0, max_restarts=5, window=60, stable_after=30, cooldown=60, cooldown_cap=600)
    fail(p, now=0.0)
    p.cooldown_delay()
    p.begin_trial()
    p.record_death(now=200.0, uptime=1.0)
    p.cooldown_delay()
    p.begin_trial()
    delay = p.record_death(now=1000.0, uptime=300.0)
    assert delay is not None and 0.5 <= delay <= 1.0  # an ordinary first backoff
    assert not p.on_trial and p.failed_count == 0
    # Off trial, an early death is handled as usual again: a backoff, not failed.
    assert p.record_death(now=1001.0, uptime=0.1) is not None
    fail(p, now=1002.0)
    assert p.cooldown_delay() == 60


def test_reset_clears_the_trial_and_the_doubling() -> None:
    p = policy(cooldown=60, cooldown_cap=600)
    p.cooldown_delay()
    p.cooldown_delay()
    p.begin_trial()
    p.reset()
    assert not p.on_trial and p.failed_count == 0
    assert p.record_death(now=0.0, uptime=0.1) is not None
    assert p.cooldown_delay() == 60
