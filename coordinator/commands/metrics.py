"""`ob-ctl metrics`: the metrics collector now: counters, rates over 1/5/15 minutes, histograms with their
percentiles, gauges over the last minute, and the raised alerts. The same numbers as the latest
`METRICS-*.json` snapshot, but current."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.commands.table import human_bytes, render_table

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "counters, rates (1/5/15 min), P50-P99 of processing time, file size and queue wait, gauges, alerts"


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of the collector, with the alerts."""
    telemetry = service.telemetry
    snap = telemetry.metrics.snapshot(service.clock())
    snap["alerts"] = telemetry.alerts.rows()
    snap["errors_by_category"] = telemetry.metrics.labels("failures")
    return snap


def render(snap: dict[str, Any]) -> str:
    """Tables for people."""
    counters = [[name, n] for name, n in sorted(snap["counters"].items())]
    counters += [[f"failures: {c}", n] for c, n in sorted(snap.get("errors_by_category", {}).items())]
    windows = ("1m", "5m", "15m")
    rates = [[name, *(f"{r[w]:.2f}" for w in windows)] for name, r in sorted(snap["rates"].items())]
    hists = [
        [name, h["count"], *(_value(name, h.get(k)) for k in ("p50", "p90", "p95", "p99", "max"))]
        for name, h in sorted(snap["histograms"].items())
    ]
    gauges = [
        [name, _value(name, g["value"]), _value(name, g.get("min_1m")), _value(name, g.get("max_1m"))]
        for name, g in sorted(snap["gauges"].items())
    ]
    alerts = [f"ALERT {a['name']}: {a['message']}" for a in snap.get("alerts", [])] or ["alerts: none"]
    return "\n\n".join(
        [
            render_table(["counter", "total"], counters),
            render_table(["rate (per s)", "1m", "5m", "15m"], rates),
            render_table(["histogram", "count", "p50", "p90", "p95", "p99", "max"], hists),
            render_table(["gauge", "now", "min 1m", "max 1m"], gauges),
            "\n".join(alerts),
        ]
    )


def _value(name: str, value: float | None) -> str | None:
    """Seconds as ms, bytes as KiB/MiB, the rest as numbers."""
    if value is None:
        return None
    if name.endswith("_s"):
        return f"{value * 1000:.1f}ms"
    if name.endswith("bytes"):
        return human_bytes(int(value))
    return f"{value:g}"
