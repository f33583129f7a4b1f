"""A circuit breaker per worker slot: stop giving jobs to a slot whose worker keeps failing.

Only infrastructure failures count (a crash, a hang, a timeout, a protocol error): a file that is merely
bad says nothing about the slot and counts as a success here. The breaker opens on too many failures in a
row, or on too high a failure rate over the last few jobs; after `recovery_s` one probe job is let
through, and its verdict closes the breaker or opens it again with a fresh timer.

Pure logic: no clock of its own, no I/O. Every method that depends on time takes `now` from the caller,
and every change of state is kept as a `Transition` for the supervisor to log and count.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from coordinator.states import BreakerState


@dataclass(frozen=True)
class BreakerPolicy:
    """When a slot's breaker opens, and how long it stays open.

    Two rules open it, whichever trips first: `failure_threshold` consecutive failures (0 turns the rule
    off), or a failure rate above `failure_rate` over the last `window` outcomes once at least
    `min_samples` are in the window. A window smaller than `min_samples` (or 0) is allowed and simply
    turns the rate rule off, as does a `failure_rate` of 1.0 (no rate can be above 100%); settings that
    make no sense at all (negative numbers, a rate outside [0, 1]) raise ValueError.
    """

    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_samples: int = 10
    recovery_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "window", "min_samples", "recovery_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be between 0 and 1, got {self.failure_rate}")


@dataclass(frozen=True)
class Transition:
    """One change of a breaker's state, at `now` as the caller gave it, and why."""

    old: BreakerState
    new: BreakerState
    at: float
    reason: str

    @property
    def key(self) -> str:
        """The key under which `CircuitBreaker.transitions` counts it: "closed->open" and the like."""
        return f"{self.old}->{self.new}"


class CircuitBreaker:
    """The breaker of one worker slot.

    The supervisor asks `allows(now)` before giving the slot a job, says `dispatched(now)` when it does,
    and reports the job's verdict with `succeeded`, `failed` or `released`. The OPEN -> HALF_OPEN move
    happens lazily inside `allows()`, so `state` reads OPEN until someone asks; `retry_in()` reads 0 then.

    Verdicts that arrive in a state where they prove nothing are ignored on purpose: a success while OPEN,
    or while HALF_OPEN with no probe out, is a late answer to a job given out before the breaker opened.
    """

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        # True for a failure, False for a success; maxlen drops the oldest outcome for us.
        self._window: deque[bool] = deque(maxlen=policy.window)
        self._opened_at: float | None = None
        self._probing = False
        self._opened = 0
        self._pending: list[Transition] = []
        self.transitions: Counter[str] = Counter()

    def set_policy(self, policy: BreakerPolicy) -> None:
        """New thresholds from a reloaded config; the outcomes seen so far are kept (the newest ones, when
        the window shrank)."""
        self.policy = policy
        self._window = deque(self._window, maxlen=policy.window)

    @property
    def state(self) -> BreakerState:
        """Read-only, so that every change goes through `_move` and is recorded."""
        return self._state

    @property
    def probing(self) -> bool:
        """Whether the one probe job of HALF_OPEN is out."""
        return self._probing

    def allows(self, now: float) -> bool:
        """May this slot be given a job now? In HALF_OPEN, only while no probe is out."""
        if self._state is BreakerState.OPEN:
            if self._opened_at is not None and now >= self._opened_at + self.policy.recovery_s:
                self._move(BreakerState.HALF_OPEN, now, "recovery time passed")
            else:
                return False
        if self._state is BreakerState.HALF_OPEN:
            # A second job would defeat the point of probing: one verdict decides.
            return not self._probing
        return True

    def dispatched(self, now: float) -> None:
        """A job went to the slot; in HALF_OPEN it is the probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = True

    def succeeded(self, now: float) -> None:
        """A verdict that is not an infrastructure failure: a success, or a file that was merely bad."""
        if self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.append(False)
        elif self._state is BreakerState.HALF_OPEN and self._probing:
            # The slot works again: start from a clean slate, old failures would reopen it too soon.
            self._clear()
            self._move(BreakerState.CLOSED, now, "probe job succeeded")

    def failed(self, now: float, reason: str) -> None:
        """An infrastructure failure (crash, hang, timeout, protocol error): `reason` says which."""
        self._consecutive += 1
        if self._state is BreakerState.CLOSED:
            self._window.append(True)
            why = self._trip_reason(reason)
            if why is not None:
                self._open(now, why)
        elif self._state is BreakerState.HALF_OPEN:
            # Any failure in HALF_OPEN reopens it: the probe failed, or the worker died before it could
            # take one. Either way the slot is still broken, and the timer starts again.
            self._open(now, f"probe failed: {reason}")
        # OPEN: stays open, and the timer is not extended. It runs from the moment the breaker opened, so
        # stray failures (a worker dying at idle) cannot keep a slot shut for ever.

    def released(self) -> None:
        """A dispatched job came back with no verdict (handed back on shutdown): no probe is out."""
        self._probing = False

    def reset(self, now: float, reason: str = "reset by operator") -> None:
        """Close the breaker and forget its history."""
        self._clear()
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED, now, reason)

    def retry_in(self, now: float) -> float | None:
        """Seconds until a probe is let through (0 once it may be), while OPEN; otherwise None."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.policy.recovery_s - now)

    def take_transitions(self) -> list[Transition]:
        """The transitions since the last call, oldest first."""
        taken, self._pending = self._pending, []
        return taken

    def row(self, now: float) -> dict[str, Any]:
        """This breaker for `ob-ctl workers --json`."""
        retry_in = self.retry_in(now)
        return {
            "state": str(self._state),
            "retry_in_s": None if retry_in is None else round(retry_in, 3),
            "consecutive_failures": self._consecutive,
            "window_failures": sum(self._window),
            "window_size": len(self._window),
            "opened": self._opened,
            "probing": self._probing,
        }

    # -- internals ---------------------------------------------------------------------------------------

    def _trip_reason(self, last: str) -> str | None:
        """Why the breaker should open now, or None. Checked right after a failure was counted."""
        p = self.policy
        if p.failure_threshold > 0 and self._consecutive >= p.failure_threshold:
            return f"{self._consecutive} consecutive failures; last: {last}"
        size = len(self._window)
        # A window smaller than min_samples never gets here: the rate rule is off, as documented.
        if size > 0 and size >= p.min_samples:
            failures = sum(self._window)
            if failures / size > p.failure_rate:
                return f"failure rate {failures / size:.0%} over the last {size} jobs; last: {last}"
        return None

    def _open(self, now: float, reason: str) -> None:
        self._opened_at = now
        self._probing = False
        self._opened += 1
        self._move(BreakerState.OPEN, now, reason)

    def _clear(self) -> None:
        self._consecutive = 0
        self._window.clear()
        self._opened_at = None
        self._probing = False

    def _move(self, new: BreakerState, now: float, reason: str) -> None:
        """The one place the state changes, so no change goes unrecorded."""
        transition = Transition(self._state, new, now, reason)
        self._state = new
        self._pending.append(transition)
        self.transitions[transition.key] += 1
