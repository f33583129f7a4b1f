"""Reading a metrics snapshot dict for the reports, whatever it holds.

The reports take the metrics collector's snapshot as a plain dict:

    {
        "counters":   {name: int},
        "counters_by_label": {name: {label: int}},          # optional: failures by category, ...
        "gauges":     {name: {"value", "min_1m", "max_1m", "avg_1m"}},
        "histograms": {name: {"count", "min", "max", "mean", "p50", "p90", "p95", "p99"}},
        "rates":      {name: {"1m", "5m", "15m"}},        # per second
        "alerts":     [{"name", "level", "value", "threshold", "since", "message"}],
        "errors_by_category": {category: int},
    }

A report must still be written when a part is missing (the first snapshot, a metric not collected yet, a
collector from another version): every accessor here returns None for what is not there, and the reports
show "—". Which metric means what is `MetricNames` (the collector's names by default); unknown keys are
ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coordinator import metrics

# The records' own table, so a report never disagrees with a record about a category's severity.
from coordinator.records import SEVERITY


@dataclass(frozen=True)
class MetricNames:
    """The snapshot's names for what the reports show. The defaults are the collector's own
    (`coordinator.metrics`); rates are keyed by the counter they count."""

    events_received: str = metrics.EVENTS_RECEIVED  # counter: filesystem events the watcher handed over
    events_processed: str = metrics.EVENTS_PROCESSED  # counter: sightings turned into jobs (or ignored)
    files_processed: str = metrics.FILES_PROCESSED  # counter: jobs that reached a terminal record
    successes: str = metrics.SUCCESSES  # counter: SUCCESS records
    failures: str = metrics.FAILURES  # counter: ERROR records (labelled by category)
    files_rate: str = metrics.FILES_PROCESSED  # rate: files processed per second
    events_rate: str = metrics.EVENTS_RECEIVED  # rate: events received per second
    processing_time: str = metrics.PROCESSING_S  # histogram, seconds
    queue_wait: str = metrics.QUEUE_WAIT_S  # histogram, seconds
    file_size: str = metrics.FILE_SIZE_BYTES  # histogram, bytes


DEFAULT_NAMES = MetricNames()


def section(snapshot: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """`snapshot[key]` when it is a mapping, else an empty one."""
    value = snapshot.get(key)
    return value if isinstance(value, Mapping) else {}


def counter(snapshot: Mapping[str, Any], name: str) -> int | None:
    """A counter's value, or None."""
    return _int(section(snapshot, "counters").get(name))


def rate(snapshot: Mapping[str, Any], name: str, window: str) -> float | None:
    """A rate over "1m", "5m" or "15m" (per second), or None."""
    windows = section(snapshot, "rates").get(name)
    return _float(windows.get(window)) if isinstance(windows, Mapping) else None


def stat(snapshot: Mapping[str, Any], kind: str, name: str, field: str) -> float | None:
    """One field of a histogram or gauge (`kind` "histograms" or "gauges"), or None."""
    entry = section(snapshot, kind).get(name)
    return _float(entry.get(field)) if isinstance(entry, Mapping) else None


def errors_by_category(snapshot: Mapping[str, Any]) -> dict[str, int]:
    """Error counts by category, largest first (a value may also be `{"count": n}`)."""
    out: dict[str, int] = {}
    for category, value in section(snapshot, "errors_by_category").items():
        count = _int(value.get("count") if isinstance(value, Mapping) else value)
        if count:
            out[str(category)] = count
    return dict(sorted(out.items(), key=lambda item: (-item[1], item[0])))


def errors_by_severity(by_category: Mapping[str, int]) -> dict[str, int]:
    """Error counts by severity (ERROR, WARNING, INFO), from counts by category."""
    out = {"ERROR": 0, "WARNING": 0, "INFO": 0}
    for category, count in by_category.items():
        level = severity(category)
        out[level] = out.get(level, 0) + count
    return {level: n for level, n in out.items() if n}


def severity(category: str) -> str:
    """The severity of an error category (unknown ones are WARNING, as the records say)."""
    return SEVERITY.get(category, "WARNING")


def active_alerts(snapshot: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The alerts that are raised now (an entry with `"active": false` or a `cleared` time is over)."""
    alerts = snapshot.get("alerts")
    if not isinstance(alerts, Sequence) or isinstance(alerts, str):
        return []
    return [
        a
        for a in alerts
        if isinstance(a, Mapping) and a.get("active", True) is not False and not a.get("cleared")
    ]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
