"""Telemetry: feeds the metrics collector from the running service, checks the alerts, and writes the
snapshots, the periodic metrics log entry and the reports.

    every job's end     → files processed, successes / failures by category; processing time, file size,
                          queue wait                                       (`job_ended`, from Outcomes)
    every second        → gauges: queue depth by state, busy workers, coordinator and per-worker RSS and
                          CPU; counters caught up from the watcher and the supervisor (events, restarts,
                          breaker transitions); alerts checked               (`tick`)
    every snapshot_interval_s, and at shutdown
                        → <state-dir>/metrics/METRICS-<time>.json (the newest `retention` kept), one JSON log
                          entry in the seed's shape (period, statistics, errors by category), and the
                          markdown reports in <state-dir>/reports/

The maths is `coordinator.metrics` and `coordinator.alerts` (pure); this module only gathers and writes.
Nothing here may stop the loop: a failed write is logged and retried at the next snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from loguru import logger

from coordinator import metrics as m
from coordinator.alerts import Alerts, Thresholds
from coordinator.config import Config
from coordinator.errors_table import stats_label
from coordinator.jobs import Job
from coordinator.report_writer import ReportInputs, ReportThread, gather
from coordinator.states import JobState, SlotState

if TYPE_CHECKING:
    from coordinator.service import Service

#: Gauges are sampled, and alerts checked, this often.
SAMPLE_S = 1.0
#: Records that failed their schema check (written anyway, flagged): a counter, so a snapshot shows them.
INVALID_RECORDS = "invalid_records"
#: Failures the watcher logged (a failed scan, an event it could not handle): a health reason for a minute.
WATCHER_ERRORS = "watcher_errors"
#: Jobs an operator cancelled (`ob-ctl bucket remove --cancel`): not files processed.
CANCELLED = "cancelled"
#: `.bucket-include` files (one per version) with bad lines, recorded as Configuration errors: not files.
BAD_RULE_FILES = "bad_rule_files"


class Telemetry:
    """Metrics, alerts and snapshots of one running service (see the module docstring)."""

    def __init__(self, service: Service, now: float, *, wall: Callable[[], float] = time.time) -> None:
        self.service = service
        self.wall = wall
        self.metrics = m.MetricsCollector(now)
        self.alerts = Alerts(_thresholds(service))
        self.directory = service.state_dir / "metrics"
        self._log_since = self.metrics.checkpoint(now)
        self._wait_mark = self.metrics.checkpoint(now)  # queue-wait P95 for alerts: since the last snapshot
        self._next_sample = now
        self._next_snapshot = now + service.config.metrics.snapshot_interval_s
        self._seen: dict[str, int] = {}  # source counters already counted
        self._worker_gauges: set[int] = set()  # slots whose gauges we set
        self._me = psutil.Process()
        self._me.cpu_percent(None)  # prime
        self.snapshots_written = 0
        self.last_snapshot: dict[str, Any] | None = None
        self.started_wall = wall()
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(self.started_wall))}-{os.getpid()}"
        self.grep_counts: dict[str, dict[str, int]] = {}  # bucket -> grep rule -> matching lines
        self.reports = ReportThread()

    def reconfigure(self, config: Config, now: float) -> None:
        """A reloaded config: new thresholds at once, and the next snapshot no later than the new interval."""
        self.alerts.thresholds = Thresholds(**config.alerts.model_dump())
        self._next_snapshot = min(self._next_snapshot, now + config.metrics.snapshot_interval_s)

    # -- events -----------------------------------------------------------------------------------------

    def job_ended(
        self, job: Job, state: JobState, category: str | None, grep_rules: list[str] | None = None
    ) -> None:
        """A job reached its terminal record (`grep_rules`: the rule of each grep match its note lists)."""
        metrics = self.metrics
        now = self.service.clock()
        if grep_rules:
            counts = self.grep_counts.setdefault(job.key[0], {})
            for rule in grep_rules:
                counts[rule] = counts.get(rule, 0) + 1
        if job.kind == "rules":
            # A `.bucket-include` file with bad lines: configuration, not a file the service processed.
            metrics.inc(BAD_RULE_FILES, now=now)
            return
        if category == "Cancelled":
            # An operator's choice (`bucket remove --cancel`), not a file the service failed on: kept out
            # of files processed and failures, so it raises no error-rate alert.
            metrics.inc(CANCELLED, now=now)
            return
        metrics.inc(m.FILES_PROCESSED, now=now)
        if state is JobState.DONE:
            metrics.inc(m.SUCCESSES, now=now)
            metrics.observe(m.FILE_SIZE_BYTES, job.key[2])  # bytes processed: the files that were
        else:
            metrics.inc(m.FAILURES, label=stats_label(category), now=now)
        if job.started_at is not None:
            metrics.observe(m.QUEUE_WAIT_S, max(0.0, job.started_at - job.created_at))
            if job.finished_at is not None:
                metrics.observe(m.PROCESSING_S, max(0.0, job.finished_at - job.started_at))

    # -- time passes ------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Sample, check alerts and write a snapshot when due. Never raises."""
        try:
            if now >= self._next_sample:
                self._next_sample = now + SAMPLE_S
                self._sample(now)
                self._check_alerts(now)
            if now >= self._next_snapshot:
                self._next_snapshot = now + self.service.config.metrics.snapshot_interval_s
                self.snapshot(now)
        except Exception:  # telemetry must never take the service down
            logger.exception("telemetry failed; trying again at the next tick")

    def _catch_up(self, name: str, total: int, now: float, label: str | None = None) -> None:
        """Count what a source counter (the watcher's, the supervisor's) gained since we last looked."""
        key = f"{name}:{label}"
        gained = total - self._seen.get(key, 0)
        self._seen[key] = total
        if gained > 0:
            self.metrics.inc(name, gained, label=label, now=now)

    def _sample(self, now: float) -> None:
        svc, metrics = self.service, self.metrics
        watcher_stats = svc.watcher.stats
        self._catch_up(m.EVENTS_RECEIVED, watcher_stats.get("events", 0), now)
        self._catch_up(m.EVENTS_PROCESSED, watcher_stats.get("sightings", 0), now)
        self._catch_up(WATCHER_ERRORS, watcher_stats.get("errors", 0), now)
        recent = metrics.count(WATCHER_ERRORS, 60, now)
        if recent:
            svc.health.report("watcher", f"{recent} watcher error(s) in the last minute (see the log)")
        else:
            svc.health.clear("watcher")
        sup = svc.supervisor
        self._catch_up(m.RESTARTS, sup.stats.get("restarts", 0), now)
        self._catch_up(INVALID_RECORDS, svc.records.invalid, now)  # each one a bug, logged when written
        for slot in sup.slots:
            for key, n in slot.breaker.transitions.items():
                self._catch_up(m.BREAKER_TRANSITIONS, n, now, label=f"{slot.index}:{key}")
        for state, n in svc.jobs.counts().items():
            metrics.set_gauge(f"queue_depth.{state}", n, now)
        metrics.set_gauge("workers_busy", sum(s.job is not None for s in sup.slots), now)
        metrics.set_gauge("workers", len(sup.slots), now)
        try:
            with self._me.oneshot():
                metrics.set_gauge("coordinator.rss_bytes", self._me.memory_info().rss, now)
                metrics.set_gauge("coordinator.cpu_percent", self._me.cpu_percent(None), now)
        except psutil.Error:
            pass
        live = set()
        for slot in sup.all_slots:
            if slot.rss_bytes is not None and slot.proc is not None:
                live.add(slot.index)
                metrics.set_gauge(f"worker.{slot.index}.rss_bytes", slot.rss_bytes, now)
                if slot.cpu_percent is not None:
                    metrics.set_gauge(f"worker.{slot.index}.cpu_percent", slot.cpu_percent, now)
        for index in self._worker_gauges - live:
            metrics.drop_gauges(f"worker.{index}.")
        self._worker_gauges = live

    def alert_values(self, now: float) -> dict[str, float | None]:
        """What the alerts are checked against."""
        metrics, svc = self.metrics, self.service
        files_5m = metrics.count(m.FILES_PROCESSED, 300, now)
        failures_5m = metrics.count(m.FAILURES, 300, now)
        return {
            "files_5m": files_5m,
            "error_rate": failures_5m / files_5m if files_5m else None,
            "queue_depth": svc.jobs.counts().get(JobState.QUEUED.value, 0),
            "queue_wait_p95_s": self._queue_wait(),
            "failed_slots": sum(s.state is SlotState.FAILED for s in svc.supervisor.slots),
            "restarts_per_min": metrics.count(m.RESTARTS, 60, now),
            "disk_free_mb": self._disk_free_mb(),
        }

    def _queue_wait(self) -> float | None:
        """The worse of: the P95 wait of the jobs that ended since the last snapshot, and how long the job
        at the head of the queue has waited so far (which keeps the alert up while nothing ends at all)."""
        recent = self.metrics.quantile_since(m.QUEUE_WAIT_S, self._wait_mark, 0.95)
        since = self.service.jobs.oldest_waiting_since()
        head = max(0.0, self.wall() - since) if since is not None else None
        known = [v for v in (recent, head) if v is not None]
        return max(known) if known else None

    def _disk_free_mb(self) -> float | None:
        svc = self.service
        # (records/ may be a mount of its own, below the state dir)
        places = {
            svc.state_dir,
            svc.state_dir / "records",
            *(svc.config.bucket_output(b) for b in svc.config.buckets),
        }
        free: list[float] = []
        for place in places:
            try:
                free.append(shutil.disk_usage(place).free / (1024 * 1024))
            except OSError:
                continue
        return min(free) if free else None

    def _check_alerts(self, now: float) -> None:
        raised, cleared = self.alerts.check(self.alert_values(now), self.wall())
        health = self.service.health
        for alert in raised:
            logger.warning("alert {}: {}", alert.name, alert.message)
            health.report(f"alert:{alert.name}", f"alert {alert.name}: {alert.message}")
        for alert in cleared:
            logger.info("alert {} cleared", alert.name)
            health.clear(f"alert:{alert.name}")
        for alert in self.alerts.active.values():  # keep the reason's figure current
            health.report(f"alert:{alert.name}", f"alert {alert.name}: {alert.message}")

    # -- snapshots --------------------------------------------------------------------------------------

    def final(self, now: float) -> None:
        """At shutdown: a last sample and snapshot, and the reports written here (after any run still in
        progress), so the files on disk tell the whole run."""
        try:
            self._sample(now)
            snap = self.snapshot(now, reports=False)
            wanted = self.service.config.metrics.reports
            self.reports.finish(self._report_inputs(snap, self.wall()) if wanted else None)
        except Exception:
            logger.exception("the final metrics snapshot failed")

    def snapshot(self, now: float, *, reports: bool = True) -> dict[str, Any]:
        """Write a METRICS-*.json snapshot (keeping the newest `retention`), log the period's JSON entry,
        start writing the reports (unless `reports` is False or the config says no); return the snapshot."""
        wall = self.wall()
        snap = self.metrics.snapshot(now)
        snap["alerts"] = self.alerts.rows()
        snap["errors_by_category"] = self.metrics.labels(m.FAILURES)
        snap["generated"] = _iso(wall)
        snap["run_id"] = self.run_id
        self.last_snapshot = snap
        summary = self.metrics.period_summary(self._log_since, now, wall_now=wall)
        self._log_since = self.metrics.checkpoint(now)
        self._wait_mark = self._log_since
        logger.bind(metrics=summary).info("metrics: {}", json.dumps(summary, sort_keys=True))
        try:
            self._write(snap, wall)
        except OSError as exc:
            logger.error("cannot write a metrics snapshot in {}: {}", self.directory, exc)
        if reports and self.service.config.metrics.reports:
            self.reports.submit(self._report_inputs(snap, wall))
        return snap

    def _report_inputs(self, snap: dict[str, Any], wall: float) -> ReportInputs:
        return gather(
            self.service,
            snap,
            run_id=self.run_id,
            started_wall=self.started_wall,
            wall=wall,
            grep_counts=self.grep_counts,
        )

    def _write(self, snap: dict[str, Any], wall: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(wall))
        name = f"METRICS-{stamp}.json"
        tmp = self.directory / f".{name}.tmp"
        try:
            tmp.write_text(json.dumps(snap, indent=2, sort_keys=True))
            os.replace(tmp, self.directory / name)
        except OSError:
            tmp.unlink(missing_ok=True)  # (a full disk must not fill up with half-written snapshots too)
            raise
        self.snapshots_written += 1
        keep = self.service.config.metrics.retention
        old = sorted(p for p in self.directory.glob("METRICS-*.json"))[:-keep]
        for path in old:
            path.unlink(missing_ok=True)


def _thresholds(service: Service) -> Thresholds:
    return Thresholds(**service.config.alerts.model_dump())


def _iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def snapshot_files(state_dir: Path) -> list[Path]:
    """The snapshots on disk, oldest first."""
    return sorted((state_dir / "metrics").glob("METRICS-*.json"))
