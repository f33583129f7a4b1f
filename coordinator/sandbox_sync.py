"""Bringing the workers' sandboxes up to date after the buckets (or limits, or command skills) changed.

A worker builds its sandbox once, before it touches a file, and nothing can widen it from outside: a
worker started before a bucket was added cannot read that bucket or write its notes. So after a change:

- every live worker whose sandbox is not the one the config asks for now (`Jails.outdated`) is marked
  outdated (`Supervisor.mark_outdated`), and the supervisor replaces it the way it recycles workers: a
  working slot once idle, one slot at a time, a spare at once (a worker still starting when the change came
  is caught when it is ready);
- the jobs of each bucket added meanwhile stay parked in the queue until no worker that may still be
  given a job lacks the bucket; then they are let go.

A removed bucket needs no waiting (the old sandboxes allow more, not less), but its workers are replaced
all the same, so no worker keeps access to a directory the service no longer watches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from coordinator.states import SlotState

if TYPE_CHECKING:
    from coordinator.jails import Jails
    from coordinator.queue import JobQueue
    from coordinator.supervisor import Supervisor

#: A worker in these states may still be handed a job (unless it is being killed).
_MAY_GET_JOBS = frozenset({SlotState.STARTING, SlotState.READY, SlotState.BUSY})


class SandboxSync:
    """Replaces outdated workers and holds new buckets' jobs until the workers can reach them."""

    def __init__(self, jails: Jails, supervisor: Supervisor, jobs: JobQueue) -> None:
        self.jails = jails
        self.supervisor = supervisor
        self.jobs = jobs
        self.waiting: dict[str, tuple[str, str]] = {}  # bucket -> (root, notes dir) its jobs wait for
        self.active = False

    def changed(self, added: dict[str, tuple[str, str]]) -> None:
        """The workers' sandbox changed; `added` maps each new bucket to its root and notes dir, whose jobs
        are held from now until the workers can reach them."""
        for name, dirs in added.items():
            self.jobs.park(name)
            self.waiting[name] = dirs
        self.active = True
        self.tick()

    def forget(self, bucket: str) -> None:
        """The bucket was removed again before its jobs were let go: they stay parked, for good reason now."""
        self.waiting.pop(bucket, None)

    def tick(self) -> list[str]:
        """Mark outdated workers for replacement; let go the buckets every worker that may get a job can
        reach now. Returns those buckets. Cheap when nothing changed lately."""
        if not self.active:
            return []
        outdated = self.jails.outdated()
        sup = self.supervisor
        behind = False
        for slot in sup.all_slots:
            if slot.pid is None or slot.pid not in outdated:
                continue
            sup.mark_outdated(slot)  # recycled in turn (a spare at once)
            # A draining worker (with a `plan`) counts too: `ob-ctl scale` may take it back before it goes.
            if slot.kill is None and slot.state in _MAY_GET_JOBS:
                behind = True
        released = [] if behind else list(self.waiting)
        for name in released:
            root, output = self.waiting.pop(name)
            count = self.jobs.unpark(name, root=root, output=output)
            logger.info(
                "bucket {}: every worker's sandbox reaches it now; {} queued job(s) go out", name, count
            )
        self.active = bool(outdated or self.waiting)
        return released
