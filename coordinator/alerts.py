"""Alerts: thresholds from `[alerts]`, checked against the values the telemetry samples; pure logic.

A breach raises an alert (logged at WARNING, shown in `ob-ctl status`, in the health reasons and in the
snapshot) and it stays raised while the value stays past its threshold; it clears, logged at INFO, when the
value is back. No flapping guard beyond that: the values are already smoothed (rates over five minutes, a
P95), and a threshold of 0 switches an alert off.

    name               value                                          raised when
    error_rate         failures / files processed, last 5 minutes     > threshold (and 20+ files)
    queue_depth        queued jobs                                    > threshold
    queue_wait_p95_s   P95 of the time from admission to dispatch     > threshold
    failed_slots       worker slots in `failed`                       >= threshold
    restarts_per_min   worker restarts in the last minute             > threshold
    disk_free_mb       free MiB where notes and records are written   < threshold
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Below this many files in the window, an error rate says nothing yet (3 of 4 files is not a trend).
MIN_FILES_FOR_RATE = 20


@dataclass(frozen=True)
class Thresholds:
    """One threshold per alert; 0 switches it off."""

    error_rate: float = 0.5
    queue_depth: int = 10_000
    queue_wait_p95_s: float = 600.0
    failed_slots: int = 1
    restarts_per_min: int = 10
    disk_free_mb: int = 512


@dataclass
class Alert:
    """An alert that is raised now."""

    name: str
    value: float
    threshold: float
    since: float  # wall clock
    message: str

    def row(self) -> dict[str, Any]:
        """As `ob-ctl status --json` and the snapshot show it."""
        return {
            "name": self.name,
            "level": "warning",
            "value": self.value,
            "threshold": self.threshold,
            "since": self.since,
            "message": self.message,
        }


class Alerts:
    """The raised alerts, and what changed at each check."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.active: dict[str, Alert] = {}

    def check(self, values: dict[str, float | None], wall_now: float) -> tuple[list[Alert], list[Alert]]:
        """Compare `values` (missing or None: not known yet) with the thresholds; return (raised now,
        cleared now)."""
        raised: list[Alert] = []
        cleared: list[Alert] = []
        for name, breach in self._breaches(values).items():
            if breach is None:
                gone = self.active.pop(name, None)
                if gone is not None:
                    cleared.append(gone)
                continue
            value, threshold, message = breach
            alert = self.active.get(name)
            if alert is None:
                alert = self.active[name] = Alert(name, value, threshold, wall_now, message)
                raised.append(alert)
            else:
                alert.value, alert.threshold, alert.message = value, threshold, message
        return raised, cleared

    def rows(self) -> list[dict[str, Any]]:
        """The raised alerts, oldest first."""
        return [a.row() for a in sorted(self.active.values(), key=lambda a: a.since)]

    def _breaches(self, v: dict[str, float | None]) -> dict[str, tuple[float, float, str] | None]:
        t = self.thresholds
        out: dict[str, tuple[float, float, str] | None] = {}

        def over(name: str, threshold: float, message: str, *, at_least: bool = False) -> None:
            value = v.get(name)
            out[name] = None
            if value is None or threshold <= 0:
                return
            if value >= threshold if at_least else value > threshold:
                out[name] = (float(value), threshold, message.format(value=value))

        files = v.get("files_5m") or 0
        rate = v.get("error_rate") if files >= MIN_FILES_FOR_RATE else None
        out["error_rate"] = (
            (rate, t.error_rate, f"{rate:.0%} of the last 5 minutes' {files:.0f} files failed")
            if rate is not None and t.error_rate > 0 and rate > t.error_rate
            else None
        )
        over("queue_depth", t.queue_depth, "{value:.0f} jobs queued")
        over("queue_wait_p95_s", t.queue_wait_p95_s, "P95 queue wait {value:.0f}s")
        over("failed_slots", t.failed_slots, "{value:.0f} worker slot(s) failed", at_least=True)
        over("restarts_per_min", t.restarts_per_min, "{value:.0f} worker restarts in the last minute")
        free = v.get("disk_free_mb")
        out["disk_free_mb"] = (
            (free, t.disk_free_mb, f"only {free:.0f} MiB free for notes and records")
            if free is not None and t.disk_free_mb > 0 and free < t.disk_free_mb
            else None
        )
        return out
