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
