"""The trackers' aggregates on a hand-built records index: `error_stats` (ob-ctl errors stats) and
`success_report` (ob-ctl report), each figure checked against the rows that make it."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.error_stats import TREND_BINS, error_stats
from coordinator.queue import connect
from coordinator.schema import migrate
from coordinator.success_stats import success_report

NOW = 100_000.0
_ids = itertools.count(1)


def insert(conn: sqlite3.Connection, kind: str, state: str, at: float, **columns: Any) -> None:
    """One records row; `columns` fills the rest (category, component, bucket, skill, ...)."""
    job_id = columns.pop("job_id", next(_ids))
    row = {
        "name": f"{kind}-x-{job_id:06d}-{next(_ids)}.json",
        "job_id": job_id,
        "kind": kind,
        "state": state,
        "bucket": "inbox",
        "relpath": "f",
        "timestamp": at,
        **columns,
    }
    keys = ", ".join(row)
    conn.execute(f"INSERT INTO records ({keys}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(tmp_path / "queue.db")
    migrate(c)
    yield c
    c.close()


@pytest.fixture
def errors_db(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Seven ERROR records (one old, six in the last 24 hours) and a SUCCESS record, which never counts."""
    e = "ERROR"
    insert(conn, e, "failed", NOW - 2 * 86400, category="FileContent", severity="INFO", component="worker")
    insert(conn, e, "failed", NOW - 23 * 3600, category="FileAccess", severity="WARNING", component="watcher")
    insert(conn, e, "failed", NOW - 23 * 3600, category="FileAccess", severity="WARNING", component="watcher",
           bucket="other", resolved=1, resolved_at=NOW - 10)  # fmt: skip
    insert(
        conn, e, "quarantined", NOW - 3600, category="WorkerCrash", severity="ERROR", component="supervisor"
    )
    insert(conn, e, "failed", NOW - 1800, category="Martian", severity="WARNING", component="worker")
    insert(conn, e, "failed", NOW - 60, category=None, severity=None, component=None, superseded=1)
    insert(conn, e, "failed", NOW, category="Timeout", severity="ERROR", component="worker", resolved=1)
    insert(conn, "SUCCESS", "done", NOW - 60, skill="text", file_type="text", duration_s=0.1, bytes=10)
    return conn


def test_error_counts_by_category_component_bucket_and_severity(errors_db: sqlite3.Connection) -> None:
    stats = error_stats(errors_db, now=NOW)
    # open: neither resolved by an operator nor retried since
    assert (stats["total"], stats["open"], stats["resolved"], stats["superseded"]) == (7, 4, 2, 1)
    assert stats["by_category"] == {
        "FileAccess": 2,
        "Unclassified": 2,  # "Martian" and a record without a category: counted, never a crash
        "FileContent": 1,
        "Timeout": 1,
        "WorkerCrash": 1,
    }
    # The stored severity where there is one; the classifier's (WARNING for unknown) where there is none.
    assert stats["by_severity"] == {"WARNING": 4, "ERROR": 2, "INFO": 1}
    assert stats["by_component"] == {"worker": 3, "watcher": 2, "supervisor": 1, "unknown": 1}
    assert stats["by_bucket"] == {"inbox": 6, "other": 1}
    assert stats["distribution"]["FileAccess"] == round(2 / 7, 4)
    assert sum(stats["distribution"].values()) == pytest.approx(1, abs=1e-3)


def test_since_narrows_every_count(errors_db: sqlite3.Connection) -> None:
    stats = error_stats(errors_db, now=NOW, since=NOW - 2 * 3600)
    assert stats["total"] == 4 and stats["since"] == NOW - 2 * 3600
    assert stats["by_category"] == {"Timeout": 1, "Unclassified": 2, "WorkerCrash": 1}
    assert (stats["open"], stats["resolved"]) == (2, 1)  # (the superseded one is not open)


def test_the_trend_bins_the_window_oldest_first(errors_db: sqlite3.Connection) -> None:
    trend = error_stats(errors_db, now=NOW)["trend"]  # no since: the last 24 hours in 2-hour bins
    assert (trend["start"], trend["bin_s"]) == (NOW - 86400, 7200)
    assert len(trend["counts"]) == TREND_BINS
    # 23 hours ago falls in the first bin; 60 min, 30 min, 1 min ago and now in the last one. The 2-day-old
    # record is outside.
    assert trend["counts"] == [2] + [0] * 10 + [4]
    narrow = error_stats(errors_db, now=NOW, since=NOW - 3600)["trend"]
    assert narrow["bin_s"] == 300 and narrow["counts"] == [1] + [0] * 5 + [1] + [0] * 4 + [2]


def test_no_errors_is_all_zeros(conn: sqlite3.Connection) -> None:
    stats = error_stats(conn, now=NOW)
    assert (stats["total"], stats["open"], stats["by_category"], stats["distribution"]) == (0, 0, {}, {})
    assert stats["trend"]["counts"] == [0] * TREND_BINS


@pytest.fixture
def outcomes_db(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Outcomes in two buckets: 4 successes, 2 failures (one of them superseded by a retry that then
    succeeded, so it is left out), 1 quarantined, and an old success."""
    s, e = "SUCCESS", "ERROR"
    insert(conn, s, "done", NOW - 10, skill="text", file_type="text", duration_s=0.1, bytes=100)
    insert(conn, s, "done", NOW - 10, skill="text", file_type="text", duration_s=0.3, bytes=300)
    insert(
        conn, s, "done", NOW - 10, skill="json", file_type="json", duration_s=0.2, bytes=50, bucket="other"
    )
    insert(conn, e, "failed", NOW - 30, category="FileContent", job_id=99, superseded=1)
    insert(conn, s, "done", NOW - 5, skill="json", file_type="json", duration_s=0.4, bytes=50, job_id=99)
    insert(conn, e, "failed", NOW - 10, category="FileAccess", bucket="other")
    insert(conn, e, "quarantined", NOW - 10, category="WorkerCrash")
    insert(conn, s, "done", NOW - 86400 * 3, skill="text", file_type="text", duration_s=1.0, bytes=1000)
    return conn


def test_the_report_overall(outcomes_db: sqlite3.Connection) -> None:
    report = success_report(outcomes_db, now=NOW)
    assert report["groups"] == [] and report["group_by"] is None
    assert report["overall"] == {
        "processed": 7,
        "successful": 5,
        "failed": 1,
        "quarantined": 1,
        "success_rate": round(5 / 7, 4),
        "avg_duration_s": round((0.1 + 0.3 + 0.2 + 0.4 + 1.0) / 5, 6),
        "bytes": 1500,
    }
    recent = success_report(outcomes_db, now=NOW, since=NOW - 3600)["overall"]
    assert (recent["processed"], recent["successful"], recent["bytes"]) == (6, 4, 500)


def test_the_report_by_bucket_skill_and_type(outcomes_db: sqlite3.Connection) -> None:
    def figures(group_by: str) -> dict[Any, tuple[int, int, int, int, Any]]:
        report = success_report(outcomes_db, now=NOW, since=NOW - 3600, group_by=group_by)
        return {
            g["group"]: (g["processed"], g["successful"], g["failed"], g["quarantined"], g["bytes"])
            for g in report["groups"]
        }

    assert figures("bucket") == {"inbox": (4, 3, 0, 1, 450), "other": (2, 1, 1, 0, 50)}
    # A failed file reported no skill or type: failures make a group of their own.
    assert figures("skill") == {
        "text": (2, 2, 0, 0, 400),
        "json": (2, 2, 0, 0, 100),
        None: (2, 0, 1, 1, None),
    }
    assert figures("type") == figures("skill")  # in this index each skill has one type
    report = success_report(outcomes_db, now=NOW, since=NOW - 3600, group_by="bucket")
    inbox = report["groups"][0]
    assert inbox["group"] == "inbox" and inbox["success_rate"] == 0.75
    assert inbox["avg_duration_s"] == round((0.1 + 0.3 + 0.4) / 3, 6)
    # The groups add up to the overall figures.
    for key in ("processed", "successful", "failed", "quarantined"):
        assert sum(g[key] for g in report["groups"]) == report["overall"][key]


def test_an_empty_report(conn: sqlite3.Connection) -> None:
    report = success_report(conn, now=NOW, group_by="type")
    assert report["groups"] == []
    assert report["overall"] == {
        "processed": 0,
        "successful": 0,
        "failed": 0,
        "quarantined": 0,
        "success_rate": None,
        "avg_duration_s": None,
        "bytes": None,
    }
