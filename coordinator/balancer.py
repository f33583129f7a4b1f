"""The balancer: which of the workers that may take a job now gets the next one. Pure logic.

The supervisor decides who is a candidate (a READY worker with free credit whose breaker is closed, or
half-open and waiting for its one probe, while the fleet is not paused); a strategy only orders them:

- `least_loaded` (default): fewest jobs in hand, ties broken least-recently-used. With one job of credit
  per worker every candidate is idle, so this spreads work by who has waited longest;
- `round_robin`: the next slot number after the last one picked, wrapping round;
- `weighted`: smooth weighted round robin (nginx's) over the candidates only: each pick adds every
  candidate's weight to its running score, the highest score wins and pays back the candidates' total.
  Over any stretch where the same workers are free, slot i gets weights[i] picks per round.

No strategy starves a candidate: least_loaded always reaches the one idle longest; round_robin visits every
slot number in turn; weighted raises a passed-over candidate's score by at least 1 a pick until it wins.
Weights decide among *free* workers. When every worker is busy, each one takes the next job as it frees up
(a worker does one job at a time, so leaving it idle would only slow the queue down): under saturation work
follows the workers' speed, as it does in HAProxy or nginx once every server is at its connection limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Candidate(Protocol):
    """What a strategy sees of a worker slot."""

    @property
    def index(self) -> int: ...

    @property
    def load(self) -> int: ...

    @property
    def last_dispatch(self) -> float: ...


C = TypeVar("C", bound=Candidate)

STRATEGIES = ("least_loaded", "round_robin", "weighted")


class Strategy(Protocol):
    """Picks one of a non-empty list of candidates."""

    name: str

    def pick(self, candidates: Sequence[C]) -> C: ...

    def forget(self, index: int) -> None:
        """A slot is gone (scaled down): drop what the strategy remembers about it."""
        ...


class LeastLoaded:
    """Fewest jobs in hand, then least recently given one, then the lowest slot number."""

    name = "least_loaded"

    def pick(self, candidates: Sequence[C]) -> C:
        return min(candidates, key=lambda c: (c.load, c.last_dispatch, c.index))

    def forget(self, index: int) -> None:
        pass


class RoundRobin:
    """The first candidate whose slot number comes after the last pick's, wrapping round."""

    name = "round_robin"

    def __init__(self) -> None:
        self.last = -1

    def pick(self, candidates: Sequence[C]) -> C:
        after = [c for c in candidates if c.index > self.last]
        chosen = min(after or candidates, key=lambda c: c.index)
        self.last = chosen.index
        return chosen

    def forget(self, index: int) -> None:
        pass


class Weighted:
    """Smooth weighted round robin over the candidates of each pick."""

    name = "weighted"

    def __init__(self, weights: Sequence[int]) -> None:
        self.weights = list(weights)
        self.score: dict[int, int] = {}

    def weight(self, index: int) -> int:
        """A slot's weight: weights[index], 1 past the end of the list."""
        return self.weights[index] if 0 <= index < len(self.weights) else 1

    def pick(self, candidates: Sequence[C]) -> C:
        total = 0
        for c in candidates:
            w = self.weight(c.index)
            total += w
            self.score[c.index] = self.score.get(c.index, 0) + w
        chosen = max(candidates, key=lambda c: (self.score[c.index], -c.last_dispatch, -c.index))
        self.score[chosen.index] -= total
        return chosen

    def forget(self, index: int) -> None:
        self.score.pop(index, None)


def make_strategy(name: str, weights: Sequence[int] = ()) -> Strategy:
    """The strategy called `name` (one of STRATEGIES)."""
    if name == "least_loaded":
        return LeastLoaded()
    if name == "round_robin":
        return RoundRobin()
    if name == "weighted":
        return Weighted(weights)
    raise ValueError(f"unknown balancer strategy {name!r} (known: {', '.join(STRATEGIES)})")
