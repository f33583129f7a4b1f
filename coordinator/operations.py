"""What an operator can do to a running fleet: scale it, restart or find one slot, pause and resume
dispatch, close a breaker, and apply a reloaded configuration. Each `ob-ctl` command calls one of these;
nothing here takes a lock or turns a request away because another is in progress.

A mixin of `Supervisor`, kept apart so the supervisor reads as frames in, time passing and jobs out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from coordinator.balancer import make_strategy
from coordinator.config import Config
from coordinator.policies import breaker_policy, config_message, fleet_policy, restart_policy
from coordinator.slots import Slot
from coordinator.states import SlotState

if TYPE_CHECKING:
    from coordinator.balancer import Strategy
    from coordinator.config import SupervisorConfig
    from coordinator.fleet import FleetGuard
    from protocol.messages import Config as ConfigMessage


_SCALED_DOWN = "scaled down"


class Operations:
    """The operator's actions on the slots (see the module docstring)."""

    # What this mixin uses of the Supervisor it is part of.
    config: Config
    sup: SupervisorConfig
    slots: list[Slot]
    spares: list[Slot]
    stopping: bool
    paused: str | None
    fleet: FleetGuard
    balancer: Strategy
    config_generation: int
    _config_msg: ConfigMessage
    _next_index: int

    if TYPE_CHECKING:

        @property
        def all_slots(self) -> list[Slot]: ...
        def _new_slot(self, index: int, *, spare: bool = False) -> Slot: ...
        def _start(self, slot: Slot, now: float) -> None: ...
        def _ready_spare(self) -> Slot | None: ...
        def _take_spare(self, slot: Slot, spare: Slot, now: float, *, refill_at: float) -> None: ...
        def _drain(self, slot: Slot, now: float, reason: str) -> None: ...
        def _refill(self, slot: Slot, now: float) -> None: ...
        def _remove(self, slot: Slot, now: float) -> None: ...
        def _breaker_news(self, slot: Slot, now: float) -> None: ...
        def _fleet_news(self) -> None: ...

    def find(self, index: int) -> Slot:
        """The slot (or warm spare) numbered `index`; KeyError names the slots there are."""
        for slot in self.all_slots:
            if slot.index == index:
                return slot
        there = ", ".join(str(s.index) for s in self.all_slots)
        raise KeyError(f"no worker slot {index} (slots: {there})")

    def scale(self, n: int, now: float) -> dict[str, list[int]]:
        """Run `n` working slots: new ones start (a ready spare first), surplus ones finish their job and go.
        Idle and not-running slots are let go before busy ones, newer before older. No job is lost: a
        draining worker finishes what it holds."""
        if self.stopping:
            raise RuntimeError("the coordinator is stopping")
        active = [s for s in self.slots if not s.removing]
        added: list[int] = []
        removed: list[int] = []
        for slot in self.slots:  # take back slots still finishing their last job before adding new ones
            if len(active) >= n:
                break
            if slot.removing and slot.state in (SlotState.BUSY, SlotState.STARTING) and not slot.outdated:
                slot.removing = False
                if slot.plan == _SCALED_DOWN:  # (an operator's pending restart stays pending)
                    slot.plan = None
                active.append(slot)
                added.append(slot.index)
        while len(active) < n:
            slot = self._new_slot(self._next_index)
            self._next_index += 1
            self.slots.append(slot)
            active.append(slot)
            added.append(slot.index)
            spare = self._ready_spare()
            if spare is not None:
                self._take_spare(slot, spare, now, refill_at=now)
            else:
                self._start(slot, now)
        surplus = len(active) - n
        if surplus > 0:
            order = sorted(active, key=lambda s: (s.proc is not None, s.job is not None, -s.index))
            for slot in order[:surplus]:
                slot.removing = True
                removed.append(slot.index)
                if slot.proc is None:
                    slot.state = SlotState.STOPPED
                    self._remove(slot, now)
                else:
                    self._drain(slot, now, _SCALED_DOWN)
        logger.info("scale to {} workers: added slots {}, removing slots {}", n, added, removed)
        return {"added": added, "removing": removed}

    def restart_slot(self, index: int, now: float) -> str:
        """Restart one slot's worker gracefully (finish its job, then swap); a failed or restarting slot
        starts at once with its restart history forgotten."""
        if self.stopping:
            raise RuntimeError("the coordinator is stopping")
        slot = self.find(index)
        if slot.removing:
            raise RuntimeError(f"slot {index} is being removed (scaled down); it is not restarted")
        slot.policy.reset()
        if slot.proc is None:
            slot.refill = False
            self._refill(slot, now)
            return "starting"
        self._drain(slot, now, "restarted by an operator")
        return "restarting" if slot.state is SlotState.STOPPING else "draining"

    def mark_outdated(self, slot: Slot) -> None:
        """Replace this slot's worker in turn, like a recycle: its sandbox no longer fits the config."""
        slot.outdated = True

    def drain(self, reason: str = "drained by an operator") -> None:
        """Give no worker a new job until `resume` (workers finish what they hold; files keep queueing)."""
        self.paused = reason
        logger.warning("dispatch paused: {}", reason)

    def resume(self, now: float) -> None:
        """Take jobs again: undoes `drain`, and lifts a fleet-guard pause without waiting for its probe."""
        if self.paused is not None:
            logger.info("dispatch resumed")
        self.paused = None
        if self.fleet.paused:
            self.fleet.resume(now)
            self._fleet_news()

    def reset_breaker(self, index: int, now: float) -> None:
        """Close one slot's breaker by hand."""
        slot = self.find(index)
        slot.breaker.reset(now)
        self._breaker_news(slot, now)

    def reconfigure(self, config: Config, now: float) -> list[str]:
        """Apply a reloaded configuration without losing a job; return what changed, for the log.

        Restart, breaker and fleet policies change in place (history kept); a new balancer strategy starts
        fresh; the worker and spare counts scale; when what workers are told (skills, grep rules, limits)
        changed, every worker is recycled in turn, one slot at a time, like `max_jobs_per_worker`."""
        changes: list[str] = []
        old = self.config
        self.config, self.sup = config, config.supervisor
        for slot in self.all_slots:
            slot.policy.update(restart_policy(config))
            slot.breaker.set_policy(breaker_policy(config))
        self.fleet.policy = fleet_policy(config)
        if config.balancer != old.balancer:
            self.balancer = make_strategy(config.balancer.strategy, config.balancer.weights)
            changes.append(f"balancer {config.balancer.strategy}")
        message = config_message(config)
        if message != self._config_msg:
            self._config_msg = message
            self.config_generation += 1
            changes.append("workers' settings (recycling every worker in turn)")
        if config.service.workers != sum(not s.removing for s in self.slots):
            self.scale(config.service.workers, now)
            changes.append(f"workers {config.service.workers}")
        self._resize_spares(config.supervisor.spare_workers, now)
        return changes

    def _resize_spares(self, n: int, now: float) -> None:
        keep = [s for s in self.spares if not s.removing]
        while len(keep) < n:
            spare = self._new_slot(self._next_index, spare=True)
            self._next_index += 1
            self.spares.append(spare)
            keep.append(spare)
            self._start(spare, now)
        for spare in sorted(keep, key=lambda s: s.proc is not None)[: max(0, len(keep) - n)]:
            spare.removing = True
            if spare.proc is None:
                self._remove(spare, now)
            else:
                self._drain(spare, now, "fewer spares")
