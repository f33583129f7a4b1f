"""Schema v1 → v2 on a real v1 database file: the trackers' columns appear, old rows stay readable with NULLs
in them, and the coordinator indexes new records with every column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator import queries
from coordinator.error_stats import error_stats
from coordinator.queue import JobQueue, connect
from coordinator.records import WrittenRecord
from coordinator.schema import SCHEMA_V1, SCHEMA_VERSION, SchemaTooNew, migrate
from coordinator.states import JobState

V1_JOB = (
    "INSERT INTO jobs (id, bucket, relpath, size, mtime_ns, inode, path, output_path, state, attempts, "
    "created_at, finished_at, last_error, record) VALUES (?, 'b', ?, 1, 1, ?, ?, ?, ?, 1, 10, 20, ?, ?)"
)


def v1_database(path: Path) -> None:
    """A queue database exactly as the first release left it: v1 tables, one done and one failed job with
    their records indexed."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {SCHEMA_V1}; PRAGMA user_version = 1; COMMIT;")
    ok, bad = "SUCCESS-2026-01-01-000000-000001.json", "ERROR-2026-01-01-000000-000002.json"
    conn.execute(V1_JOB, (1, "a.txt", 1, "/b/a.txt", "/n/a", "done", None, ok))
    conn.execute(V1_JOB, (2, "link", 2, "/b/link", "/n/link", "failed", "FileAccess: a symlink", bad))
    conn.execute(
        "INSERT INTO records VALUES (?, 1, 'SUCCESS', 'done', NULL, NULL, 'b', 'a.txt', 100, NULL, 0)", (ok,)
    )
    conn.execute(
        "INSERT INTO records VALUES (?, 2, 'ERROR', 'failed', 'FileAccess', 'WARNING', 'b', 'link', 200, "
        "'link is a symlink', 0)",
        (bad,),
    )
    conn.close()


def test_a_v1_database_is_migrated_and_its_rows_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    v1_database(path)
    with pytest.raises(
        queries.NoQueue, match="schema v1, older than this ob-ctl's v2: start the coordinator"
    ):
        queries.open_queue(tmp_path)  # ob-ctl reads; only the coordinator migrates

    q = JobQueue(path)
    assert q.schema_was == 1 and SCHEMA_VERSION == 2
    (version,) = q.db.execute("PRAGMA user_version").fetchone()
    assert version == 2
    columns = {row[1] for row in q.db.execute("PRAGMA table_info(records)")}
    assert {"component", "resolved", "resolved_at", "duration_s", "bytes", "skill", "file_type"} <= columns
    assert q.counts()["done"] == 1 and q.counts()["failed"] == 1

    # A new job's records go in with every column, beside the old rows.
    job = q.add(("b", "c.txt", 3, 3, 3), path="/b/c.txt", relpath="c.txt", output_path="/n/c")
    assert job is not None and job.id == 3
    q.mark_running(job, "0.1", lease_s=10)
    record = WrittenRecord(
        "SUCCESS-2026-01-02-000000-000003.json", "SUCCESS", 300, duration_s=0.5, bytes=3, skill="text",
        file_type="text",
    )  # fmt: skip
    q.finish(job, JobState.DONE, record=record)
    q.close()

    conn = queries.open_queue(tmp_path)
    (old_error,) = queries.errors(conn)
    assert (
        old_error["name"] == "ERROR-2026-01-01-000000-000002.json" and old_error["category"] == "FileAccess"
    )
    assert (old_error["component"], old_error["resolved"], old_error["resolved_at"]) == (None, False, None)
    rows = conn.execute(
        "SELECT name, duration_s, bytes, skill, file_type FROM records ORDER BY name"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        ("ERROR-2026-01-01-000000-000002.json", None, None, None, None),
        ("SUCCESS-2026-01-01-000000-000001.json", None, None, None, None),  # old rows keep NULLs
        ("SUCCESS-2026-01-02-000000-000003.json", 0.5, 3, "text", "text"),
    ]
    stats = error_stats(conn, now=1000)
    assert stats["by_component"] == {"unknown": 1} and stats["open"] == 1
    conn.close()


def test_migrating_twice_is_a_no_op_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = connect(tmp_path / "queue.db")
    assert migrate(conn) == 0
    assert migrate(conn) == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        migrate(conn)
    conn.close()
