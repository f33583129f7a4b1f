"""The success tracker's report over the records index, for `ob-ctl report`.

A pure function over a read-only `sqlite3.Connection` (like `coordinator.queries`). It counts outcomes,
one per file version: the records an operator's retry superseded are left out, so a file that failed, was
retried and then succeeded counts once, as a success (`ob-ctl errors stats` counts every error instead).

`processed` is successful + failed + quarantined. Duration and bytes come from SUCCESS records only (an
ERROR record has neither), so `avg_duration_s` is the mean processing time of the files that made a note,
and records indexed before schema v2 add nothing to either. Grouping by skill or type puts every failure
in the group `null`: the worker that failed on a file did not report its skill or type.
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: `--group-by` → the records column it groups on (a fixed map: never a column name from the command line).
GROUPS = {"bucket": "bucket", "skill": "skill", "type": "file_type"}


def success_report(
    conn: sqlite3.Connection, *, now: float, since: float | None = None, group_by: str | None = None
) -> dict[str, Any]:
    """Totals since `since` (epoch seconds; None for all records), and per group when `group_by` is one of
    `GROUPS`: processed, successful, failed, quarantined, success rate, average duration, total bytes."""
    where, params = ("AND timestamp >= ?", [since]) if since is not None else ("", [])
    (overall,) = _aggregate(conn, None, where, params)  # no GROUP BY: one row, even over no records
    overall.pop("group")
    groups = _aggregate(conn, GROUPS[group_by], where, params) if group_by is not None else []
    groups.sort(key=lambda g: (-g["processed"], "" if g["group"] is None else str(g["group"])))
    return {"since": since, "until": now, "group_by": group_by, "overall": overall, "groups": groups}


def _aggregate(
    conn: sqlite3.Connection, column: str | None, where: str, params: list[Any]
) -> list[dict[str, Any]]:
    """The figures per value of `column` (a name from `GROUPS`, never user text), or over all records."""
    sql = (
        f"SELECT {column or 'NULL'}, COUNT(*), SUM(kind = 'SUCCESS'), SUM(state = 'failed'), "
        "SUM(state = 'quarantined'), SUM(duration_s), COUNT(duration_s), SUM(bytes) "
        f"FROM records WHERE superseded = 0 {where}"
    )
    if column is not None:
        sql += f" GROUP BY {column}"
    return [_totals(group, rest) for group, *rest in conn.execute(sql, params)]


def _totals(group: Any, row: list[Any]) -> dict[str, Any]:
    """One group's figures from its aggregate row (count, successes, failed, quarantined, duration sum,
    durations counted, bytes sum)."""
    processed, successful, failed, quarantined, duration_sum, durations, total_bytes = row
    return {
        "group": group,
        "processed": processed,
        "successful": successful or 0,
        "failed": failed or 0,
        "quarantined": quarantined or 0,
        "success_rate": round((successful or 0) / processed, 4) if processed else None,
        "avg_duration_s": round(duration_sum / durations, 6) if durations else None,
        "bytes": total_bytes,
    }
