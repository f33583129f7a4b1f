"""The error tracker's aggregates over the records index, for `ob-ctl errors stats`.

Pure functions over a read-only `sqlite3.Connection` (like `coordinator.queries`): one GROUP BY query
brings the ERROR records down to a few rows, and Python folds those into the counts by category,
component, bucket and severity. Categories go through the classifier (`coordinator.errors_table`), so an
unknown one is counted as `Unclassified` and a row without a stored severity gets the table's.

Every ERROR record counts, superseded ones too (each is an error that happened; `superseded` says how many
were retried since). `open` is neither resolved by an operator nor retried since (the same rule as the live
view's error summary); `resolved` is resolved.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from coordinator.errors_table import severity_of, stats_label

#: The trend splits its window into this many equal bins.
TREND_BINS = 12
#: The trend's window when no `since` is given.
DEFAULT_TREND_WINDOW_S = 24 * 3600.0


def error_stats(conn: sqlite3.Connection, *, now: float, since: float | None = None) -> dict[str, Any]:
    """Counts of the ERROR records since `since` (epoch seconds; None for all of them) up to `now`:
    total, open, resolved, superseded, by category / component / bucket / severity, the share of each
    category, and the trend (`error_trend`)."""
    where, params = ("AND timestamp >= ?", [since]) if since is not None else ("", [])
    rows = conn.execute(
        "SELECT category, severity, component, bucket, resolved, superseded, COUNT(*) FROM records "
        f"WHERE kind = 'ERROR' {where} GROUP BY 1, 2, 3, 4, 5, 6",
        params,
    ).fetchall()
    by_category: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    by_bucket: Counter[str] = Counter()
    resolved = superseded = still_open = 0
    for category, severity, component, bucket, is_resolved, is_superseded, count in rows:
        by_category[stats_label(category)] += count
        by_severity[severity or severity_of(category)] += count
        by_component[component or "unknown"] += count  # rows indexed before schema v2 have none
        by_bucket[bucket] += count
        resolved += count if is_resolved else 0
        superseded += count if is_superseded else 0
        still_open += count if not is_resolved and not is_superseded else 0
    total = sum(by_category.values())
    return {
        "since": since,
        "until": now,
        "total": total,
        "open": still_open,
        "resolved": resolved,
        "superseded": superseded,
        "by_category": _ranked(by_category),
        "by_severity": _ranked(by_severity),
        "by_component": _ranked(by_component),
        "by_bucket": _ranked(by_bucket),
        "distribution": {name: round(n / total, 4) for name, n in _ranked(by_category).items()},
        "trend": error_trend(conn, now=now, since=since),
    }


def error_trend(conn: sqlite3.Connection, *, now: float, since: float | None = None) -> dict[str, Any]:
    """ERROR records per bin of time: `TREND_BINS` equal bins from `since` (or 24 hours back) to `now`,
    oldest first. `start` and `bin_s` say where each bin begins."""
    start = since if since is not None else now - DEFAULT_TREND_WINDOW_S
    bin_s = max(now - start, 1e-9) / TREND_BINS
    counts = [0] * TREND_BINS
    rows = conn.execute(
        "SELECT CAST((timestamp - ?) / ? AS INTEGER), COUNT(*) FROM records "
        "WHERE kind = 'ERROR' AND timestamp >= ? AND timestamp <= ? GROUP BY 1",
        (start, bin_s, start, now),
    )
    for index, count in rows:
        counts[min(index, TREND_BINS - 1)] += count  # a record at `now` exactly belongs to the last bin
    return {"start": start, "bin_s": bin_s, "counts": counts}


def _ranked(counter: Counter[str]) -> dict[str, int]:
    """Most first, then by name (a stable order for tables and tests)."""
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))
