"""The read-only queries behind `ob-ctl jobs`, `errors` and `quarantine list`, and the duration parser.

The database is built through the real `JobQueue` (so the queries read exactly what the coordinator writes)
and read through a second, read-only connection, the way `ob-ctl` reads it beside a live coordinator.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator import queries
from coordinator.jobs import Job
from coordinator.queue import JobQueue, connect
from coordinator.records import WrittenRecord
from coordinator.states import JobState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def add(q: JobQueue, name: str, bucket: str = "b") -> Job:
    job = q.add(
        (bucket, name, 1, 111, 7), path=Path("/in") / name, relpath=name, output_path=Path("/n") / name
    )
    assert job is not None
    return job


def end(
    q: JobQueue, job: Job, state: JobState, *, at: float, category: str | None = None, suffix: str = ""
) -> None:
    """Run the job and end it with a record stamped `at` (`suffix` "-2" for a retried job's second record)."""
    q.mark_running(job, "0.1", lease_s=10)
    kind = "SUCCESS" if state is JobState.DONE else "ERROR"
    name = f"{kind}-2026-01-01-000000-{job.id:06d}{suffix}.json"
    message = None if category is None else f"{category} went wrong"
    record = WrittenRecord(name, kind, at, category, None if category is None else "WARNING", message)
    q.finish(job, state, record=record, error=None if category is None else f"{category}: {message}")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Six jobs: done, failed (FileAccess, at t=100), failed then retried and failed again (Timeout at 200,
    then at 300), quarantined (WorkerCrash at 400), queued, and one in another bucket."""
    clock = Clock()
    q = JobQueue(tmp_path / "queue.db", clock=clock)
    done, failed, retried, quarantined, _queued = (add(q, n) for n in ("a", "b", "c", "d", "e"))
    add(q, "f", bucket="other")
    q.flush()
    end(q, done, JobState.DONE, at=50)
    end(q, failed, JobState.FAILED, at=100, category="FileAccess")
    end(q, retried, JobState.FAILED, at=200, category="Timeout")
    q.flush()
    q.reopen(retried, "retried by an operator")
    end(q, retried, JobState.FAILED, at=300, category="Timeout", suffix="-2")
    end(q, quarantined, JobState.QUARANTINED, at=400, category="WorkerCrash")
    q.flush()
    conn = connect(tmp_path / "queue.db", readonly=True)
    yield conn
    conn.close()
    q.close()


def test_jobs_are_newest_first_with_every_column(db: sqlite3.Connection) -> None:
    rows = queries.jobs(db)
    assert [r["id"] for r in rows] == [6, 5, 4, 3, 2, 1]
    assert set(rows[0]) == set(queries.JOB_COLUMNS)
    by_id = {r["id"]: r for r in rows}
    assert by_id[1]["state"] == "done" and by_id[1]["record"].startswith("SUCCESS-")
    assert by_id[2]["last_error"] == "FileAccess: FileAccess went wrong"
    assert by_id[3]["attempts"] == 1 and by_id[3]["record"].endswith("-2.json")  # a retry starts afresh


def test_jobs_filter_by_state_and_bucket_and_limit(db: sqlite3.Connection) -> None:
    assert [r["id"] for r in queries.jobs(db, state="failed")] == [3, 2]
    assert [r["id"] for r in queries.jobs(db, state="queued")] == [6, 5]
    assert [r["id"] for r in queries.jobs(db, bucket="other")] == [6]
    assert [r["id"] for r in queries.jobs(db, state="queued", bucket="b")] == [5]
    assert queries.jobs(db, bucket="nope") == []
    assert [r["id"] for r in queries.jobs(db, limit=2)] == [6, 5]
    assert len(queries.jobs(db, limit=0)) == len(queries.jobs(db, limit=None)) == 6


def test_quarantined_lists_only_quarantined_jobs(db: sqlite3.Connection) -> None:
    (row,) = queries.quarantined(db)
    assert row["id"] == 4 and row["state"] == "quarantined"
    assert row["last_error"].startswith("WorkerCrash") and row["record"].startswith("ERROR-")


def test_errors_are_newest_first_and_flag_superseded_records(db: sqlite3.Connection) -> None:
    rows = queries.errors(db)
    assert [(r["job_id"], r["timestamp"]) for r in rows] == [(4, 400), (3, 300), (3, 200), (2, 100)]
    assert set(rows[0]) == set(queries.RECORD_COLUMNS)
    assert [r["superseded"] for r in rows] == [False, False, True, False]
    assert rows[0]["category"] == "WorkerCrash" and rows[0]["state"] == "quarantined"
    assert all(r["name"].startswith("ERROR-") for r in rows)  # never a SUCCESS record


def test_errors_filter_by_time_category_and_limit(db: sqlite3.Connection) -> None:
    assert [r["timestamp"] for r in queries.errors(db, since=200)] == [400, 300, 200]
    assert [r["job_id"] for r in queries.errors(db, category="Timeout")] == [3, 3]
    assert [r["job_id"] for r in queries.errors(db, category="fileaccess")] == [2]  # any case
    assert queries.errors(db, category="Timeout", since=250)[0]["timestamp"] == 300
    assert queries.errors(db, category="Nope") == []
    assert len(queries.errors(db, limit=1)) == 1
    assert len(queries.errors(db, limit=0)) == 4


def test_a_reader_sees_commits_made_after_it_connected(tmp_path: Path) -> None:
    q = JobQueue(tmp_path / "queue.db")
    add(q, "a")
    q.flush()
    reader = connect(tmp_path / "queue.db", readonly=True)
    assert len(queries.jobs(reader)) == 1
    add(q, "b")
    assert len(queries.jobs(reader)) == 1  # not committed yet
    q.flush()
    assert len(queries.jobs(reader)) == 2
    reader.close()
    q.close()


def test_open_queue_needs_a_queue_database(tmp_path: Path) -> None:
    with pytest.raises(queries.NoQueue, match=f"no queue database in {tmp_path}"):
        queries.open_queue(tmp_path)
    JobQueue(tmp_path / "queue.db").close()
    conn = queries.open_queue(tmp_path)
    assert queries.jobs(conn) == []
    with pytest.raises(sqlite3.OperationalError):  # read-only: ob-ctl can never write the queue
        conn.execute("DELETE FROM jobs")
    conn.close()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("1h", 3600),
        ("2d", 172_800),
        ("1w", 604_800),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("0s", 0),
        (" 2H ", 7200),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert queries.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1h 30m", "1hh", "one hour", "1h-", "1e3s"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration .*30s, 15m"):
        queries.parse_duration(text)
