"""Read-only questions to the queue database, for `ob-ctl jobs`, `errors` and `quarantine list` (the
trackers' aggregates are in `coordinator.error_stats` and `coordinator.success_stats`).

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
from coordinator.records import NAME_RE
from coordinator.schema import SCHEMA_VERSION

#: The columns `jobs` shows; `kind` and `path` tell a symlink or a moved input apart.
JOB_COLUMNS = (
    "id", "state", "bucket", "relpath", "path", "kind", "size", "attempts", "kills", "worker",
    "last_error", "record", "created_at", "started_at", "finished_at",
)  # fmt: skip
RECORD_COLUMNS = (
    "name", "job_id", "state", "category", "severity", "component", "bucket", "relpath", "timestamp",
    "message", "superseded", "resolved", "resolved_at",
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
        conn = connect(path, readonly=True)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        raise NoQueue(f"cannot open {path}: {exc}") from None
    if version < SCHEMA_VERSION:
        # Read-only here, and the coordinator is the queue's only writer: it migrates at its next start.
        conn.close()
        raise NoQueue(
            f"{path} has schema v{version}, older than this ob-ctl's v{SCHEMA_VERSION}: start the "
            "coordinator once to upgrade it"
        )
    return conn


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
    unresolved: bool = False,
    limit: int | None = 50,
) -> list[dict[str, Any]]:
    """ERROR records newest first; `since` is a wall-clock time (epoch seconds), `category` matches
    regardless of case, `unresolved` leaves out the ones an operator resolved. Superseded records (their
    job was retried since) are included and flagged."""
    clauses: list[str] = ["kind = 'ERROR'"]
    params: list[float | str] = []
    if unresolved:
        clauses.append("resolved = 0")
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
        row["resolved"] = bool(row["resolved"])
    return rows


def record_ref(text: str) -> int | str:
    """What `ob-ctl errors resolve` takes: a job id (an int: all of that job's ERROR records) or a record
    file's name (a str, `.json` optional: that one record). ValueError for anything else."""
    spec = text.strip()
    if spec.isdigit() and int(spec) > 0:
        return int(spec)
    name = spec if spec.endswith(".json") else spec + ".json"
    if NAME_RE.match(name):
        return name
    raise ValueError(f"not a job id or record name: {text!r} (see ob-ctl errors)")


def records_named(conn: sqlite3.Connection, ref: int | str) -> list[dict[str, Any]]:
    """The indexed records a `record_ref` names: every record of a job (oldest first), or the one record
    of that name; empty when the index has none."""
    column = "job_id" if isinstance(ref, int) else "name"
    sql = f"SELECT name, job_id, kind, state, resolved FROM records WHERE {column} = ? ORDER BY timestamp"
    return [_row(row) for row in conn.execute(sql, (ref,))]


def _where(**filters: str | None) -> tuple[str, list[str]]:
    given = {column: value for column, value in filters.items() if value is not None}
    if not given:
        return "", []
    return " WHERE " + " AND ".join(f"{column} = ?" for column in given), list(given.values())
