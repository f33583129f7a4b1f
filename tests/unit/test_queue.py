"""The SQLite job queue: idempotent enqueue, transitions, group commit, reloading, retries and migration.

Real SQLite files in a temp dir; "a crash" is closing the connection without flushing, which is exactly what
a SIGKILLed coordinator leaves behind.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from coordinator.jobs import Job
from coordinator.queue import JobQueue
from coordinator.records import WrittenRecord
from coordinator.schema import SCHEMA_VERSION, SchemaTooNew
from coordinator.states import JobState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def add(q: JobQueue, name: str, size: int = 1, inode: int = 7) -> Job | None:
    key = ("b", name, size, 111, inode)
    return q.add(key, path=Path("/b") / name, relpath=name, output_path=Path("/n") / name)


def record(name: str = "SUCCESS-2026-01-01-000000-000001.json") -> WrittenRecord:
    return WrittenRecord(name, "SUCCESS", 1.0)


def test_same_version_is_a_noop_and_a_changed_file_is_a_new_job(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    first = add(q, "a.txt")
    assert first is not None
    assert add(q, "a.txt") is None
    second = add(q, "a.txt", size=2)
    assert second is not None and second.id != first.id
    assert q.counts()["queued"] == 2


def test_duplicates_stay_noops_after_a_restart(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add(q, "a.txt")
    q.flush()
    q.mark_running(job, "0.1", lease_s=10)
    q.finish(job, JobState.DONE, record=record())
    q.close()
    again = JobQueue(tmp_path / "q.db")
    assert add(again, "a.txt") is None
    assert again.counts()["done"] == 1
    assert again.get(job.id).record == record().name


def test_unflushed_changes_are_lost_on_a_crash_flushed_ones_are_not(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    kept = add(q, "kept.txt")
    q.flush()
    add(q, "lost.txt")
    q.mark_running(kept, "0.1", lease_s=10)
    q.db.close()  # SIGKILL: nothing after the last flush reaches the file
    again = JobQueue(tmp_path / "q.db")
    assert again.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 0, "quarantined": 0}
    assert again.pop_queued().relpath == "kept.txt"


def test_one_flush_is_one_transaction(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    for i in range(500):
        add(q, f"f{i}.txt", inode=i)
    q.flush()
    assert q.commits == 1
    q.flush()  # nothing pending: no empty commit
    assert q.commits == 1


def test_a_second_terminal_state_is_refused(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add(q, "a.txt")
    q.mark_running(job, "0.1", lease_s=1)
    q.finish(job, JobState.DONE, record=record())
    with pytest.raises(RuntimeError, match="already done"):
        q.finish(job, JobState.FAILED, record=record("ERROR-2026-01-01-000000-000001.json"))


def test_running_jobs_reload_as_running_for_recovery(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add(q, "a.txt")
    q.flush()
    q.mark_running(job, "0.1", lease_s=30)
    q.flush()
    q.db.close()
    again = JobQueue(tmp_path / "q.db")
    (running,) = again.running()
    assert running.id == job.id and running.worker == "0.1" and running.attempts == 1
    assert running.lease_until is not None


def test_delayed_retry_waits_for_its_time(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    job = add(q, "a.txt")
    assert q.pop_queued() is job
    q.mark_running(job, "0.1", lease_s=1)
    q.requeue(job, "System: disk full", front=False, delay=5.0)
    assert q.pop_queued() is None and q.next_retry_at() == 1_005.0
    clock.now += 5.0
    assert q.pop_queued() is job


def test_retry_goes_to_the_front(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    a, b = add(q, "a.txt"), add(q, "b.txt")
    assert q.pop_queued() is a
    q.mark_running(a, "0.1", lease_s=1)
    q.requeue(a, "WorkerCrash: died")
    assert q.pop_queued() is a and q.pop_queued() is b


def test_reopen_supersedes_old_records(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add(q, "a.txt")
    q.mark_running(job, "0.1", lease_s=1)
    q.finish(job, JobState.FAILED, record=WrittenRecord("ERROR-2026-01-01-000000-000001.json", "ERROR", 1.0))
    q.flush()
    q.reopen(job, "operator retry")
    q.flush()
    assert q.counts()["queued"] == 1 and q.counts()["failed"] == 0
    (superseded,) = q.db.execute("SELECT superseded FROM records").fetchone()
    assert superseded == 1


def test_schema_is_migrated_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    q = JobQueue(path)
    assert q.schema_was == 0
    (version,) = q.db.execute("PRAGMA user_version").fetchone()
    assert version == SCHEMA_VERSION
    q.close()
    assert JobQueue(path).schema_was == SCHEMA_VERSION  # already current: nothing to do
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        JobQueue(path)


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    (mode,) = q.db.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_not_files_are_never_handed_to_workers_even_after_a_restart(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    link = q.add(
        ("b", "l", 0, 1, 9), path=Path("/b/l"), relpath="l", output_path=Path("/n/l"), kind="symlink"
    )
    assert link is not None
    q.flush()
    q.db.close()  # crashed before recording it
    again = JobQueue(tmp_path / "q.db")
    assert again.pop_queued() is None
    (pending,) = again.take_not_files()
    assert pending.id == link.id and pending.kind == "symlink"


def test_a_record_superseded_in_the_same_iteration_is_marked(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add(q, "a.txt")
    q.flush()
    q.pop_queued()
    q.mark_running(job, "0.1", lease_s=1)
    q.finish(job, JobState.FAILED, record=WrittenRecord("ERROR-2026-01-01-000000-000001.json", "ERROR", 1.0))
    q.reopen(job, "operator retry")  # no flush in between
    q.flush()
    assert q.db.execute("SELECT superseded FROM records").fetchone()[0] == 1
    assert job.attempts == 0 and job.worker is None


def test_a_job_that_changes_before_its_first_commit_is_stored_as_it_is_then(tmp_path: Path) -> None:
    # New jobs are inserted with only the columns `add` sets; later changes in the same batch are updates.
    q = JobQueue(tmp_path / "q.db", clock=Clock())
    untouched, changed = add(q, "a.txt"), add(q, "b.txt")
    assert untouched is not None and changed is not None
    q.mark_running(changed, "0.1", lease_s=10)
    q.requeue(changed, "WorkerCrash: killed", delay=5)
    q.close()
    rows = {
        row[0]: row[1:]
        for row in sqlite3.connect(tmp_path / "q.db").execute(
            "SELECT relpath, state, attempts, kills, worker, not_before, last_error, path, output_path, kind "
            "FROM jobs"
        )
    }
    assert rows["a.txt"] == ("queued", 0, 0, None, None, None, "/b/a.txt", "/n/a.txt", "file")
    assert rows["b.txt"] == (
        "queued",
        1,
        0,
        None,
        1_005.0,
        "WorkerCrash: killed",
        "/b/b.txt",
        "/n/b.txt",
        "file",
    )


def test_a_name_that_is_not_utf8_is_stored_and_read_back_exactly(tmp_path: Path) -> None:
    name = os.fsdecode(b"latin-\xe9t\xe9.txt")  # Python's str for these bytes holds lone surrogates
    q = JobQueue(tmp_path / "q.db")
    job = add(q, name)
    assert job is not None
    q.flush()
    q.requeue(q.pop_queued() or job, "try again")  # a dirty update binds the path again
    q.flush()
    q.close()
    again = JobQueue(tmp_path / "q.db")
    assert add(again, name) is None  # still known: the key compares equal to itself
    popped = again.pop_queued()
    assert popped is not None and popped.relpath == name and popped.path == f"/b/{name}"
    assert os.fsencode(popped.path) == b"/b/latin-\xe9t\xe9.txt"


# -- parking: a removed bucket's queued jobs are held, not lost --------------------------------------------


def add_to(q: JobQueue, bucket: str, name: str, inode: int = 7) -> Job:
    key = (bucket, name, 1, 111, inode)
    job = q.add(key, path=f"/{bucket}/{name}", relpath=name, output_path=f"/n/{bucket}/{name}.obs.md")
    assert job is not None
    return job


def drain(q: JobQueue) -> list[str]:
    popped = []
    while (job := q.pop_queued()) is not None:
        popped.append(f"{job.bucket}/{job.relpath}")
        q.mark_running(job, "0.1", lease_s=10)
    return popped


def test_a_parked_buckets_jobs_are_held_and_come_back_at_the_end_of_the_queue(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    for i, (bucket, name) in enumerate([("a", "1"), ("gone", "1"), ("a", "2"), ("gone", "2")]):
        add_to(q, bucket, name, inode=i)
    assert q.park("gone") == 2
    assert q.is_parked("gone") and not q.is_parked("a")
    add_to(q, "gone", "3", inode=9)  # queued later (a rescan, a retry): held too
    add_to(q, "a", "3", inode=10)
    assert q.parked() == {"gone": 3}
    assert q.has_queued()
    assert drain(q) == ["a/1", "a/2", "a/3"]
    assert not q.has_queued()
    assert q.counts()["queued"] == 3  # parked is not a state: still queued, in the database too
    assert q.unpark("gone") == 3
    assert q.parked() == {}
    assert drain(q) == ["gone/1", "gone/2", "gone/3"]


def test_a_requeued_or_delayed_job_of_a_parked_bucket_is_held_when_it_comes_back(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    running = add_to(q, "gone", "running", inode=1)
    delayed = add_to(q, "gone", "delayed", inode=2)
    q.flush()
    for job in (q.pop_queued(), q.pop_queued()):
        assert job is not None
        q.mark_running(job, "0.1", lease_s=10)
    q.requeue(delayed, "System: disk full", front=False, delay=5.0)
    q.park("gone")  # the running job is not touched ...
    assert q.parked_count("gone") == 1  # (the delayed retry counts: it is queued, and held)
    q.requeue(running, "WorkerCrash: died")  # ... but held when its worker dies
    clock.now += 10  # the delayed retry comes due: held too
    assert q.pop_queued() is None
    assert [j.relpath for j in q.parked_jobs("gone")] == ["running", "delayed"]
    assert q.unpark("gone") == 2
    assert sorted(drain(q)) == ["gone/delayed", "gone/running"]


def test_parking_survives_a_restart_for_buckets_the_config_no_longer_names(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    add_to(q, "a", "1", inode=1)
    add_to(q, "gone", "1", inode=2)
    orphan = add_to(q, "gone", "2", inode=3)
    q.flush()
    while q.pop_queued() is not orphan:
        pass
    q.mark_running(orphan, "0.1", lease_s=10)
    q.flush()
    q.db.close()  # a crash: the orphan stays `running` in the database
    again = JobQueue(tmp_path / "q.db")
    assert again.park_all_except(["a"]) == {"gone": 1}
    (reloaded,) = again.running()
    again.requeue(reloaded, "WorkerCrash: the coordinator died")  # what recovery does with it
    assert again.parked() == {"gone": 2}
    assert drain(again) == ["a/1"]


def test_ending_a_parked_job_takes_it_off_the_parked_count(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    jobs = [add_to(q, "gone", str(i), inode=i) for i in range(3)]
    q.park("gone")
    q.finish(jobs[1], JobState.FAILED, record=record("ERROR-2026-01-01-000000-000002.json"))
    assert [j.relpath for j in q.parked_jobs("gone")] == ["0", "2"]
    assert q.unpark("gone") == 2


def test_a_bucket_that_returns_elsewhere_takes_its_jobs_along(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    job = add_to(q, "gone", "sub/x.txt")
    q.flush()
    q.park("gone")
    assert q.unpark("gone", root="/new/root", output="/new/notes") == 1
    assert (job.path, job.output_path) == ("/new/root/sub/x.txt", "/new/notes/sub/x.txt.obs.md")
    q.close()
    again = JobQueue(tmp_path / "q.db")
    popped = again.pop_queued()
    assert popped is not None
    assert (popped.path, popped.output_path) == ("/new/root/sub/x.txt", "/new/notes/sub/x.txt.obs.md")


def test_parking_a_bucket_with_no_jobs_holds_the_ones_it_gets_later(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    assert q.park("new") == 0
    add_to(q, "new", "x")
    assert q.pop_queued() is None and q.parked() == {"new": 1}
    assert q.queued_by_bucket() == {"new": 1}
    assert q.unpark("new") == 1 and q.unpark("new") == 0
    assert drain(q) == ["new/x"]


def test_a_delayed_retry_of_a_bucket_that_returns_elsewhere_follows_it_too(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    job = add_to(q, "gone", "x.txt")
    q.flush()
    popped = q.pop_queued()
    assert popped is job
    q.mark_running(job, "0.1", lease_s=10)
    q.requeue(job, "WorkerCrash: died", front=False, delay=5.0)  # in the heap, not the parked list
    q.park("gone")
    q.unpark("gone", root="/new/root", output="/new/notes")
    clock.now += 10
    again = q.pop_queued()
    assert again is job and job.path == "/new/root/x.txt" and job.output_path == "/new/notes/x.txt.obs.md"


def test_relocate_all_moves_every_unfinished_job_of_a_moved_bucket_in_one_pass(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "q.db")
    stay = add_to(q, "a", "1", inode=1)
    move = add_to(q, "b", "2", inode=2)
    q.flush()
    assert q.relocate_all({"a": ("/a", "/n/a"), "b": ("/elsewhere", "/n/b")}) == 1
    assert stay.path == "/a/1" and move.path == "/elsewhere/2"


def test_the_oldest_waiting_job_is_the_head_of_the_queue(tmp_path: Path) -> None:
    clock = Clock()
    q = JobQueue(tmp_path / "q.db", clock=clock)
    assert q.oldest_waiting_since() is None
    first = add_to(q, "a", "1", inode=1)
    clock.now += 5
    add_to(q, "a", "2", inode=2)
    assert q.oldest_waiting_since() == first.created_at
    q.flush()
    popped = q.pop_queued()
    assert popped is first
    q.mark_running(first, "0.1", lease_s=10)
    assert q.oldest_waiting_since() == first.created_at + 5
