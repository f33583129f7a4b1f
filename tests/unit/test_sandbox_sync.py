"""The sandbox catch-up after the buckets changed (`coordinator.sandbox_sync`): outdated workers are marked
for the supervisor's recycling, and a new bucket's jobs are held until no worker that may get one lacks it.
Fakes for the jails and the supervisor's slots; a real in-memory queue."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from coordinator.queue import JobQueue
from coordinator.sandbox_sync import SandboxSync
from coordinator.states import SlotState


class FakeJails:
    def __init__(self) -> None:
        self.stale: set[int] = set()

    def outdated(self) -> set[int]:
        return set(self.stale)


def slot(pid: int | None, state: SlotState = SlotState.READY, **more: Any) -> SimpleNamespace:
    return SimpleNamespace(
        **({"pid": pid, "state": state, "outdated": False, "kill": None, "plan": None} | more)
    )


def make(*slots: SimpleNamespace) -> tuple[SandboxSync, FakeJails, SimpleNamespace, JobQueue]:
    jails, jobs = FakeJails(), JobQueue()
    sup = SimpleNamespace(all_slots=list(slots), mark_outdated=lambda s: setattr(s, "outdated", True))
    return SandboxSync(jails, sup, jobs), jails, sup, jobs  # type: ignore[arg-type]


def add(jobs: JobQueue, bucket: str, name: str) -> None:
    jobs.add((bucket, name, 1, 1, 1), path=f"/old/{name}", relpath=name, output_path=f"/o/{name}.obs.md")


def test_a_new_buckets_jobs_wait_until_every_worker_that_may_get_one_reaches_it() -> None:
    busy, leaving = slot(10, SlotState.BUSY), slot(11, SlotState.STOPPING, plan="scaled down")
    sync, jails, sup, jobs = make(busy, leaving, slot(None, SlotState.BACKOFF))
    jails.stale = {10, 11}
    sync.changed({"new": ("/new", "/notes-new")})
    add(jobs, "new", "a.txt")
    assert jobs.pop_queued() is None and jobs.parked() == {"new": 1}
    # Both are marked for recycling; the busy one still counts, the one already exiting does not.
    assert busy.outdated and leaving.outdated
    assert sync.tick() == [] and sync.active

    busy.pid = 12  # recycled: a fresh worker with the new sandbox; the leaving one is still exiting
    jails.stale = {11}
    assert sync.tick() == ["new"]
    job = jobs.pop_queued()
    assert job is not None and (job.path, job.output_path) == ("/new/a.txt", "/notes-new/a.txt.obs.md")
    assert sync.active  # until the outdated worker is gone
    jails.stale = set()
    sync.tick()
    assert not sync.active and sync.tick() == []


def test_a_worker_ready_after_the_change_is_still_caught() -> None:
    starting = slot(20, SlotState.STARTING)
    sync, jails, sup, _ = make(starting)
    jails.stale = {20}
    sync.changed({})
    assert starting.outdated
    starting.state, starting.outdated = SlotState.READY, False  # as if READY had reset the mark
    sync.tick()
    assert starting.outdated  # its sandbox is the old one: marked again


def test_a_bucket_removed_before_its_jobs_went_out_stays_parked() -> None:
    sync, jails, _, jobs = make(slot(30))
    jails.stale = {30}
    sync.changed({"new": ("/new", "/notes-new")})
    add(jobs, "new", "a.txt")
    sync.forget("new")
    jails.stale = set()
    assert sync.tick() == [] and jobs.parked() == {"new": 1}


def test_a_draining_worker_still_counts_it_may_be_taken_back() -> None:
    draining = slot(40, SlotState.BUSY, plan="scaled down")  # `ob-ctl scale` may keep it after all
    sync, jails, _, jobs = make(draining)
    jails.stale = {40}
    sync.changed({"new": ("/new", "/notes-new")})
    add(jobs, "new", "a.txt")
    assert sync.tick() == [] and jobs.parked() == {"new": 1}
