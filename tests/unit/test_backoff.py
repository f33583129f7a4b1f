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
