"""Read-only questions to the queue database, for `ob-ctl jobs`, `errors` and `quarantine list`.

Pure functions over a `sqlite3.Connection` (open it with `coordinator.queue.connect(path, readonly=True)`):
`ob-ctl` runs them in its own process, beside a live coordinator or after it stopped, because WAL lets a
reader look at the last committed state while the coordinator keeps writing. Every function returns plain
dicts, which are both the `--json` output and what the tables are drawn from.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from coordinator.queue import connect, db_text

#: The columns `jobs` shows; `kind` and `path` tell a symlink or a moved input apart.
JOB_COLUMNS = (
    "id", "state", "bucket", "relpath", "path", "kind", "size", "attempts", "kills", "worker",
    "last_error", "record", "created_at", "started_at", "finished_at",
)  # fmt: skip
RECORD_COLUMNS = (
    "name", "job_id", "state", "category", "severity", "bucket", "relpath", "timestamp", "message",
    "superseded",
)  # fmt: skip

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class NoQueue(Exception):
    """The state dir has no queue database (or it cannot be read); `str()` is the line to show."""


def open_queue(state_dir: Path) -> sqlite3.Connection:
    """A read-only connection to `<state_dir>/queue.db`; raises NoQueue when there is none."""
    path = state_dir.expanduser().absolute() / "queue.db"
    if not path.is_file():
        raise NoQueue(f"no queue database in {path.parent}")
    try:
        return connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise NoQueue(f"cannot open {path}: {exc}") from None


def parse_duration(text: str) -> float:
    """'30s', '15m', '1h', '2d', '1w', or several of them ('1h30m') → seconds; ValueError otherwise."""
    spec = text.strip().lower()
    parts = _DURATION.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise ValueError(f"bad duration {text!r}: use a number and a unit (s, m, h, d, w): 30s, 15m, 2d")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _row(row: sqlite3.Row) -> dict[str, Any]:
    """A row as a dict, with names that are not UTF-8 (stored as bytes) back as str."""
    return {key: db_text(row[key]) for key in row.keys()}  # noqa: SIM118 - a Row iterates values


def _limit(limit: int | None) -> int:
    return limit if limit else -1  # SQLite reads LIMIT -1 as "no limit"


def jobs(
    conn: sqlite3.Connection, *, state: str | None = None, bucket: str | None = None, limit: int | None = 50
) -> list[dict[str, Any]]:
    """Jobs newest first (by id), optionally of one state and one bucket; `limit` 0 or None for all."""
    where, params = _where(state=state, bucket=bucket)
    sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs{where} ORDER BY id DESC LIMIT ?"
    return [_row(row) for row in conn.execute(sql, (*params, _limit(limit)))]


def quarantined(conn: sqlite3.Connection, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Jobs in quarantine, newest first."""
    return jobs(conn, state="quarantined", limit=limit)


def errors(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    category: str | None = None,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """ERROR records newest first; `since` is a wall-clock time (epoch seconds), `category` matches
    regardless of case. Superseded records (their job was retried since) are included and flagged."""
    clauses: list[str] = ["kind = 'ERROR'"]
    params: list[float | str] = []
    if since is not None:
        clauses.append("timestamp >= ?")
        params.append(since)
    if category is not None:
        clauses.append("category = ? COLLATE NOCASE")
        params.append(category)
    sql = (
        f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE {' AND '.join(clauses)} "
        "ORDER BY timestamp DESC, name DESC LIMIT ?"
    )
    rows = [_row(row) for row in conn.execute(sql, (*params, _limit(limit)))]
    for row in rows:
        row["superseded"] = bool(row["superseded"])
    return rows


def _where(**filters: str | None) -> tuple[str, list[str]]:
    given = {column: value for column, value in filters.items() if value is not None}
    if not given:
        return "", []
    return " WHERE " + " AND ".join(f"{column} = ?" for column in given), list(given.values())
