"""Balancer strategies over hand-made candidates: no workers, no clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from coordinator.balancer import LeastLoaded, RoundRobin, Weighted, make_strategy


@dataclass
class Fake:
    index: int
    load: int = 0
    last_dispatch: float = 0.0


def run(strategy: object, candidates: list[Fake], picks: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    for t in range(picks):
        chosen = strategy.pick(candidates)  # type: ignore[attr-defined]
        chosen.last_dispatch = float(t + 1)
        counts[chosen.index] += 1
    return counts


def test_least_loaded_prefers_fewer_jobs_then_least_recently_used() -> None:
    a, b, c = Fake(0, load=1, last_dispatch=0.0), Fake(1, last_dispatch=5.0), Fake(2, last_dispatch=3.0)
    assert LeastLoaded().pick([a, b, c]) is c
    assert run(LeastLoaded(), [Fake(i) for i in range(3)], 9) == {0: 3, 1: 3, 2: 3}


def test_round_robin_takes_slots_in_turn_and_skips_the_busy() -> None:
    rr = RoundRobin()
    slots = [Fake(i) for i in range(3)]
    assert [rr.pick(slots).index for _ in range(5)] == [0, 1, 2, 0, 1]
    assert rr.pick([slots[0], slots[1]]).index == 0  # 2 is busy: wrap round
    assert rr.pick([slots[2]]).index == 2


def test_weighted_gives_each_slot_its_share_smoothly() -> None:
    w = Weighted([3, 1, 1])
    slots = [Fake(i) for i in range(3)]
    order = [w.pick(slots).index for _ in range(10)]
    assert Counter(order) == {0: 6, 1: 2, 2: 2}
    assert order[:5].count(0) == 3  # smooth: slot 0 never gets all of its share in a row
    assert order[0:3] != [0, 0, 0]


def test_weighted_counts_only_available_workers_and_never_starves_one() -> None:
    w = Weighted([5, 1])
    fast, slow = Fake(0), Fake(1)
    # Slot 1 is busy for a long stretch: slot 0 alone takes everything, and earns no debt for it.
    for _ in range(50):
        assert w.pick([fast]) is fast
    counts = run(w, [fast, slow], 12)
    assert counts == {0: 10, 1: 2}


def test_missing_weights_default_to_one() -> None:
    assert run(Weighted([2]), [Fake(0), Fake(1), Fake(2)], 8) == {0: 4, 1: 2, 2: 2}


def test_forget_drops_a_removed_slot() -> None:
    w = Weighted([1, 1])
    w.pick([Fake(0), Fake(1)])
    w.forget(0)
    assert 0 not in w.score


def test_make_strategy_names() -> None:
    assert make_strategy("least_loaded").name == "least_loaded"
    assert make_strategy("round_robin").name == "round_robin"
    assert make_strategy("weighted", [2, 1]).name == "weighted"
    with pytest.raises(ValueError, match="unknown balancer strategy"):
        make_strategy("random")
