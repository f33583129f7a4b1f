"""Health: `healthy / degraded / unhealthy`, with the reasons, rolled up from what the loop has seen.

Components report problems under a key (`records`, `notes`, ...) and clear them when things work again; the
slots' states add theirs. Pure logic: no clock of its own, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.states import SlotState


class Health:
    """Open problems by key."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def report(self, key: str, reason: str) -> None:
        """Something is wrong (again): remember the latest reason."""
        self.problems[key] = reason

    def clear(self, key: str) -> None:
        """It works again."""
        self.problems.pop(key, None)

    def rollup(
        self,
        slot_states: Iterable[SlotState],
        *,
        open_breakers: Iterable[int] = (),
        fleet_paused: str | None = None,
    ) -> tuple[str, list[str]]:
        """(state, reasons): unhealthy when no worker can run or the fleet guard has paused dispatch,
        degraded while anything is wrong (a slot restarting or failed, an open breaker, a problem)."""
        states = list(slot_states)
        reasons = list(self.problems.values())
        opened = sorted(open_breakers)
        if opened:
            reasons.append(f"circuit breaker open on slot(s) {', '.join(map(str, opened))}")
        if fleet_paused is not None:
            reasons.append(f"dispatch paused by the fleet guard: {fleet_paused}")
        failed = sum(s is SlotState.FAILED for s in states)
        backoff = sum(s is SlotState.BACKOFF for s in states)
        if failed:
            reasons.append(f"{failed} worker slot(s) failed")
        if backoff:
            reasons.append(f"{backoff} worker slot(s) restarting")
        if fleet_paused is not None or (states and failed == len(states)):
            return "unhealthy", reasons
        return ("degraded" if reasons else "healthy"), reasons
