"""How a slot's worker is replaced: when it dies, and when it leaves on purpose.

    died (crash, kill, hang)  → its job requeued or quarantined; the breaker counts it; the slot restarts
                                after a backoff (a ready warm spare takes over at once), or goes `failed`
                                after too many restarts, or at once on exit 78 (EX_CONFIG)
    failed                    → one trial start after a cool-down (60 s doubling to 10 min), or at once by
                                `ob-ctl restart-worker`; never failed for good, unlike supervisord's FATAL
    left on purpose (`plan`)  → recycled (max_jobs_per_worker, max_rss_mb, a reloaded config: one slot at
                                a time), restarted by an operator, scaled down, or out of CPU budget: it
                                finishes its job, gets SHUTDOWN, and is replaced at once, uncharged

A mixin of `Supervisor`, kept apart so the supervisor reads as frames in, time passing and jobs out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from coordinator.deaths import classify_death
from coordinator.jails import Aftermath
from coordinator.slots import Slot
from coordinator.spawn import describe_exit
from coordinator.states import BreakerState, SlotState
from protocol.messages import Shutdown

if TYPE_CHECKING:
    from collections.abc import Callable

    from coordinator.balancer import Strategy
    from coordinator.config import SupervisorConfig
    from coordinator.fleet import FleetGuard
    from coordinator.jails import Jails
    from coordinator.outcomes import Outcomes
    from protocol.messages import Body

#: sysexits.h EX_CONFIG: a worker that exits with it cannot run as configured, so restarting it at once
#: would only loop; the slot goes straight to `failed` (and gets its trial start after the cool-down).
EX_CONFIG = 78
#: A worker asked to exit (recycle, restart, scale down) is killed if it is still there after this long.
PLANNED_EXIT_S = 10.0
_MIB = 1024 * 1024


class Replacing:
    """Deaths, planned exits and warm spares (see the module docstring)."""

    # What this mixin uses of the Supervisor it is part of.
    slots: list[Slot]
    spares: list[Slot]
    sup: SupervisorConfig
    stopping: bool
    stats: dict[str, int]
    outcomes: Outcomes
    jails: Jails | None
    fleet: FleetGuard
    balancer: Strategy
    config_generation: int
    send: Callable[[bytes, Body], bool]
    _recycling: Slot | None
    _rss_warned: bool
    _by_identity: dict[bytes, Slot]

    if TYPE_CHECKING:

        def _start(self, slot: Slot, now: float) -> None: ...
        def _verdict(self, slot: Slot, now: float, failure: str | None) -> None: ...
        def _restarted(self, slot: Slot, now: float) -> None: ...

    def _on_exit(self, slot: Slot, now: float) -> None:
        assert slot.proc is not None
        returncode = slot.proc.returncode
        code, text = describe_exit(returncode)
        aftermath = self.jails.exited(slot.proc.pid) if self.jails is not None else Aftermath()
        uptime = now - slot.started_at
        cause = slot.kill
        # Left on purpose: asked to (or leaving by itself after saying so), holding no job, not killed for
        # anything but overstaying its SHUTDOWN.
        planned = (
            slot.plan is not None
            and slot.state is SlotState.STOPPING  # a crash while still starting is a crash
            and slot.job is None
            and (cause is None or cause.category == "planned")
        )
        slot.last_exit = code
        slot.last_returncode = returncode
        expected = (self.stopping and cause is None) or planned
        log = logger.info if expected or (self.stopping and code in ("exit 0", "SIGTERM")) else logger.warning
        log("slot {}: worker {} (pid {}) {} after {:.1f}s", slot.index, slot.name, slot.pid, text, uptime)
        self._by_identity.pop(slot.identity, None)
        charged = slot.charged
        slot.detach()
        job = slot.job
        if job is not None and self.stopping:
            slot.job = None
            slot.breaker.released()
            if slot.fleet_probe:
                slot.fleet_probe = False
                self.fleet.released()
            self.outcomes.interrupted(job)
        elif job is not None:
            slot.job = None
            slot.jobs_failed += 1
            death = classify_death(returncode, aftermath, (cause.category, cause.reason) if cause else None)
            self._verdict(slot, now, f"{death.category}: {death.reason}")
            self.outcomes.worker_died(job, death.category, death.reason, death.code)
        elif not planned and not self.stopping and not charged and not slot.spare:
            self._verdict(slot, now, f"worker {text}" + (f": {cause.reason}" if cause else ""))
        if self.stopping:
            slot.state = SlotState.STOPPED
            return
        if slot.removing:
            slot.state = SlotState.STOPPED
            self._remove(slot, now)
        elif planned:
            self._refill(slot, now)
        else:
            slot.plan = None
            self._after_death(slot, now, uptime, returncode)

    def _after_death(self, slot: Slot, now: float, uptime: float, returncode: int | None = None) -> None:
        if self._recycling is slot:
            self._recycling = None
        if returncode == EX_CONFIG:
            self._fail(slot, now, f"its worker exited with {EX_CONFIG} (EX_CONFIG): it cannot run here")
            return
        on_trial = slot.policy.on_trial
        delay = slot.policy.record_death(now, uptime)
        if delay is None:
            why = f"more than {self.sup.max_restarts} restarts in {self.sup.restart_window_s:g}s"
            self._fail(slot, now, "its trial start failed" if on_trial else why)
            return
        spare = None if slot.spare else self._ready_spare()
        if spare is not None:
            # A warm spare fills the slot at once; the spare itself is refilled after the backoff delay,
            # so a crash loop is still throttled.
            self._restarted(slot, now)
            self._take_spare(slot, spare, now, refill_at=now + delay)
            return
        slot.state = SlotState.BACKOFF
        slot.retry_at = now + delay
        logger.info("slot {}: restarting in {:.2f}s", slot.index, delay)

    def _fail(self, slot: Slot, now: float, why: str) -> None:
        """`failed`, but never for good: one trial start after a cool-down that doubles each time."""
        cooldown = slot.policy.cooldown_delay()
        slot.state = SlotState.FAILED
        slot.retry_at = now + cooldown
        logger.error(
            "slot {}: FAILED: {}; one trial start in {:g}s (ob-ctl restart-worker {} starts it now)",
            slot.index,
            why,
            cooldown,
            slot.index,
        )

    def _ready_spare(self) -> Slot | None:
        # (poll: a spare that died in the same tick as the slot it would fill is not taken)
        return next(
            (
                s
                for s in self.spares
                if s.state is SlotState.READY
                and s.kill is None
                and s.proc is not None
                and s.proc.poll() is None
            ),
            None,
        )

    # -- planned exits: recycling, operator restarts, scaling down ---------------------------------------

    def _maybe_retire(self, slot: Slot, now: float) -> None:
        """`slot` has just become idle: let it go if it is draining or due for recycling."""
        if slot.plan is not None:
            self._retire(slot, now, slot.plan)
            return
        if self.stopping or (self._recycling is not None and self._recycling is not slot):
            return  # never two slots at once: the fleet keeps its strength while one is swapped
        reason = self._recycle_reason(slot)
        if reason is not None:
            self._recycling = slot
            slot.recycles += 1
            self.stats["recycles"] += 1
            self._retire(slot, now, f"recycled: {reason}")

    def _recycle_reason(self, slot: Slot) -> str | None:
        sup = self.sup
        if slot.config_generation < self.config_generation:
            return "the configuration was reloaded"
        if slot.outdated:
            return "its sandbox predates a change of buckets or limits"
        if sup.max_jobs_per_worker and slot.proc_jobs >= sup.max_jobs_per_worker:
            return f"{slot.proc_jobs} jobs done (max_jobs_per_worker = {sup.max_jobs_per_worker})"
        rss = slot.rss_bytes
        if sup.max_rss_mb and rss is not None and rss > sup.max_rss_mb * _MIB:
            if slot.proc_jobs == 0:
                # Born over the limit: recycling it would only start another like it, forever.
                if not self._rss_warned:
                    self._rss_warned = True
                    logger.warning(
                        "max_rss_mb = {} is below a fresh worker's RSS ({:.0f} MiB); it only recycles "
                        "workers that have done a job",
                        sup.max_rss_mb,
                        rss / _MIB,
                    )
                return None
            return f"RSS {rss / _MIB:.0f} MiB over max_rss_mb = {sup.max_rss_mb}"
        return None

    def _retire(self, slot: Slot, now: float, reason: str, *, ask: bool = True) -> None:
        """Let an idle worker go on purpose: SHUTDOWN now (unless it is leaving by itself), a kill if it is
        still there after PLANNED_EXIT_S. Its exit refills the slot at once, uncharged."""
        slot.plan = reason
        slot.state = SlotState.STOPPING
        slot.plan_deadline = now + PLANNED_EXIT_S
        if ask:
            self.send(slot.identity, Shutdown(reason=reason))
        logger.info("slot {}: worker {} leaves ({}); a fresh one follows", slot.index, slot.name, reason)

    def _drain(self, slot: Slot, now: float, reason: str) -> None:
        """Retire the slot's worker once it has finished what it holds."""
        if slot.plan is not None and slot.state is SlotState.STOPPING:
            return  # already on its way out
        slot.plan = reason
        if slot.state is SlotState.READY and slot.job is None:
            self._retire(slot, now, reason)
        elif slot.state is SlotState.STOPPING:
            slot.plan_deadline = now + PLANNED_EXIT_S  # leaving by itself (after a Timeout): give it time
        # busy: `_maybe_retire` retires it after its job; starting: `_on_ready` does

    def _refill(self, slot: Slot, now: float) -> None:
        """A slot whose worker left on purpose gets a new one now: a ready spare, else a fresh start."""
        slot.plan = None
        spare = None if slot.spare else self._ready_spare()
        if spare is None:
            self._start(slot, now)
            return
        self._take_spare(slot, spare, now, refill_at=now)
        if self._recycling is slot:
            self._recycling = None

    def _take_spare(self, slot: Slot, spare: Slot, now: float, *, refill_at: float) -> None:
        slot.adopt(spare)
        self._by_identity[slot.identity] = slot
        spare.state, spare.retry_at = SlotState.BACKOFF, refill_at
        spare.refill = True  # its next start replaces what it gave away; it did not crash
        logger.info("slot {}: spare worker {} (pid {}) took over", slot.index, slot.name, slot.pid)

    def _remove(self, slot: Slot, now: float) -> None:
        """A scaled-away slot (or spare) whose process is gone."""
        for group in (self.slots, self.spares):
            if slot in group:
                group.remove(slot)
        self.balancer.forget(slot.index)
        opened = sum(s.breaker.state is not BreakerState.CLOSED for s in self.slots)
        self.fleet.breakers_changed(now, opened, len(self.slots))  # the share of open breakers moved
        if self._recycling is slot:
            self._recycling = None
        logger.info("slot {}: removed (scaled down)", slot.index)
