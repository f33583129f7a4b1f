"""METRICS_SNAPSHOT.md: one metrics snapshot for people: counters, gauges, histograms with their
percentiles, rates, error analysis, the alerts raised now, and capacity (how long the backlog takes).

`render_metrics_snapshot` is pure: a snapshot dict (shape in `coordinator.reports.snapshot`) and the
fleet's size in, the note's text out. Every metric of the snapshot is listed, by name, so a metric added to
the collector shows up here without a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.reports import snapshot as snap
from coordinator.reports.markdown import (
    Cell,
    Md,
    code,
    front_matter,
    number,
    percent,
    seconds,
    table,
    tag_name,
    text,
    utc_iso,
    wikilink,
)
from coordinator.reports.snapshot import DEFAULT_NAMES, MetricNames

FILE_NAME = "METRICS_SNAPSHOT.md"
#: The percentile columns of the histogram table, in order.
HISTOGRAM_FIELDS = ("count", "min", "mean", "p50", "p90", "p95", "p99", "max")
#: The columns of the gauge table.
GAUGE_FIELDS = ("value", "min_1m", "avg_1m", "max_1m")
#: The windows of the rate table.
RATE_WINDOWS = ("1m", "5m", "15m")


@dataclass(frozen=True)
class Capacity:
    """The fleet at snapshot time: worker slots, how many hold a job, and jobs waiting."""

    workers: int
    busy: int
    queue_depth: int


def drain_eta_s(queue_depth: int, files_per_s: float | None) -> float | None:
    """Seconds to drain `queue_depth` jobs at `files_per_s` (the 5-minute rate); 0 when nothing waits,
    None when nothing is being processed (no estimate)."""
    if queue_depth <= 0:
        return 0.0
    if not files_per_s or files_per_s <= 0:
        return None
    return queue_depth / files_per_s


def render_metrics_snapshot(
    metrics: Mapping[str, Any],
    *,
    generated: datetime | float,
    capacity: Capacity,
    run_id: str | None = None,
    names: MetricNames = DEFAULT_NAMES,
) -> str:
    """The text of METRICS_SNAPSHOT.md.

    - `metrics`: the snapshot dict (`counters`, `gauges`, `histograms`, `rates`, `alerts`,
      `errors_by_category`; see `coordinator.reports.snapshot`); missing parts show as "none".
    - `capacity`: worker slots, busy ones and queued jobs now (from `ob-ctl status`: `workers.total`,
      `workers.busy`, `jobs.queued`).
    - `names`: which histograms are seconds (processing time, queue wait) and bytes (file size), and the
      files/s rate the drain estimate uses.
    """
    alerts = snap.active_alerts(metrics)
    files_5m = snap.rate(metrics, names.files_rate, "5m")
    eta = drain_eta_s(capacity.queue_depth, files_5m)
    levels = sorted({str(a.get("level") or "warning") for a in alerts})
    alert_tags = [t for level in levels if (t := tag_name(f"alert/{level}"))]
    front = front_matter(
        {
            "type": "open-buckets-metrics-snapshot",
            "run_id": run_id,
            "generated": utc_iso(generated),
            "alerts_active": len(alerts),
            "workers": capacity.workers,
            "busy": capacity.busy,
            "queue_depth": capacity.queue_depth,
            "files_per_s_5m": files_5m,
            "drain_eta_s": eta,
            "errors_by_category": snap.errors_by_category(metrics),
            "tags": ["openbuckets", "openbuckets/report", "openbuckets/metrics", *alert_tags],
        }
    )
    intro = f"Generated {utc_iso(generated)}"
    intro += f" for run {code(run_id)}." if run_id else "."
    body = [
        "# Metrics snapshot",
        "",
        f"{intro} See also {wikilink('RUN_SUMMARY')} · {wikilink('CONFIG_DUMP')}.",
        "",
        *_alerts_section(alerts),
        *_counters_section(metrics),
        *_gauges_section(metrics),
        *_histograms_section(metrics, names),
        *_rates_section(metrics),
        *_errors_section(metrics),
        *_capacity_section(capacity, files_5m, eta),
    ]
    return front + "\n".join(body).rstrip("\n") + "\n"


def _alerts_section(alerts: list[Mapping[str, Any]]) -> list[str]:
    lines = ["## Alerts", ""]
    if not alerts:
        return [*lines, "Active alerts: none.", ""]
    rows: list[list[Cell]] = []
    for alert in alerts:
        since = alert.get("since")
        rows.append(
            [
                code(alert.get("name", "?")),
                str(alert.get("level") or "warning"),
                _value(alert.get("value")),
                _value(alert.get("threshold")),
                utc_iso(since) if isinstance(since, int | float) and not isinstance(since, bool) else None,
                str(alert["message"]) if alert.get("message") else None,
            ]
        )
    header = ("Alert", "Level", "Value", "Threshold", "Since", "Message")
    return [*lines, f"Active alerts: {len(alerts)}.", "", *table(header, rows), ""]


def _counters_section(metrics: Mapping[str, Any]) -> list[str]:
    counters = snap.section(metrics, "counters")
    rows: list[list[Cell]] = [[code(name), _value(counters[name])] for name in sorted(counters, key=str)]
    lines = ["## Counters", ""]
    if not rows:
        return [*lines, "None.", ""]
    lines += [*table(("Counter", "Value"), rows), ""]
    labelled: list[list[Cell]] = []
    for name, parts in sorted(snap.section(metrics, "counters_by_label").items(), key=lambda i: str(i[0])):
        if isinstance(parts, Mapping):
            labelled += [[code(name), code(label), _value(n)] for label, n in parts.items()]
    if labelled:
        lines += ["By label:", "", *table(("Counter", "Label", "Value"), labelled), ""]
    return lines


def _gauges_section(metrics: Mapping[str, Any]) -> list[str]:
    gauges = snap.section(metrics, "gauges")
    rows: list[list[Cell]] = []
    for name in sorted(gauges, key=str):
        rows.append([code(name), *(_number(snap.stat(metrics, "gauges", name, f)) for f in GAUGE_FIELDS)])
    lines = ["## Gauges", ""]
    if not rows:
        return [*lines, "None.", ""]
    return [*lines, *table(("Gauge", "Value", "Min (1 min)", "Avg (1 min)", "Max (1 min)"), rows), ""]


def _histograms_section(metrics: Mapping[str, Any], names: MetricNames) -> list[str]:
    histograms = snap.section(metrics, "histograms")
    timed = {names.processing_time, names.queue_wait}
    rows: list[list[Cell]] = []
    for name in sorted(histograms, key=str):
        count = snap.stat(metrics, "histograms", name, "count")
        cells: list[Cell] = [code(name), None if count is None else int(count)]
        for field in HISTOGRAM_FIELDS[1:]:
            value = snap.stat(metrics, "histograms", name, field)
            if name in timed:
                cells.append(seconds(value))
            elif name == names.file_size and value is not None:
                cells.append(Md(f"{number(value, 0)} B"))
            else:
                cells.append(_number(value))
        rows.append(cells)
    lines = ["## Histograms and percentiles", ""]
    if not rows:
        return [*lines, "None.", ""]
    header = ("Histogram", "Count", "Min", "Mean", "P50", "P90", "P95", "P99", "Max")
    return [*lines, *table(header, rows), ""]


def _rates_section(metrics: Mapping[str, Any]) -> list[str]:
    rates = snap.section(metrics, "rates")
    rows: list[list[Cell]] = [
        [code(name), *(_number(snap.rate(metrics, name, w), 3) for w in RATE_WINDOWS)]
        for name in sorted(rates, key=str)
    ]
    lines = ["## Rates (per second)", ""]
    return [*lines, *table(("Rate", "1 min", "5 min", "15 min"), rows), ""] if rows else [*lines, "None.", ""]


def _errors_section(metrics: Mapping[str, Any]) -> list[str]:
    by_category = snap.errors_by_category(metrics)
    lines = ["## Error analysis", ""]
    if not by_category:
        return [*lines, "No errors counted.", ""]
    total = sum(by_category.values())
    rows: list[list[Cell]] = [
        [code(c), snap.severity(c), n, percent(n, total)] for c, n in by_category.items()
    ]
    lines += [f"{total:,} errors in all.", "", *table(("Category", "Severity", "Count", "Share"), rows), ""]
    by_severity = snap.errors_by_severity(by_category)
    return [*lines, *table(("Severity", "Count"), list(by_severity.items())), ""]


def _capacity_section(capacity: Capacity, files_5m: float | None, eta: float | None) -> list[str]:
    if capacity.queue_depth <= 0:
        drain: Cell = "nothing queued"
    elif eta is None:
        drain = "unknown: no files processed in the last 5 minutes"
    else:
        drain = Md(f"{seconds(eta)} at the 5-minute rate")
    rows: list[tuple[str, Cell]] = [
        ("Workers", capacity.workers),
        ("Busy", capacity.busy),
        ("Utilisation", percent(capacity.busy, capacity.workers)),
        ("Queue depth", capacity.queue_depth),
        ("Files/s (5 min)", _number(files_5m, 3)),
        ("Time to drain the backlog", drain),
    ]
    return ["## Capacity", "", *table(("Measure", "Value"), rows), ""]


def _number(value: float | None, digits: int = 3) -> Cell:
    return None if value is None else number(value, digits)


def _value(value: Any) -> Cell:
    """A number as a number; anything else (a collector's surprise) as escaped text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return number(value)
    return None if value is None else text(value)
