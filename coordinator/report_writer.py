"""Writes the markdown reports into `<state-dir>/reports/` at every snapshot and at shutdown: gathers what
each one needs from the running service and hands it to the pure renderers in `coordinator.reports`.

    RUN_SUMMARY.md           the run: buckets with file counts, processing, queue, errors, performance
    METRICS_SNAPSHOT.md      the snapshot: counters, gauges, histograms, rates, errors, alerts, capacity
    CONTEXT_TREE.md          an index of the buckets' pages, and CONTEXT_TREE-<bucket>.md for each one
    CONFIG_DUMP.md           every setting with its source (default, file, cli), validation and checks

What the reports need is gathered on the loop (`gather`: the status picture, the snapshot, the config);
the slow part (a count over the whole jobs table, a bounded walk of every bucket: a tenth of a second to
seconds) runs on a thread of its own (`ReportThread`), one run at a time, with a read-only connection of its
own. A page of a bucket that is gone is removed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from coordinator import provenance, queries
from coordinator.config import Config
from coordinator.include_rules import bucket_rule_files, profile_of
from coordinator.queue import connect
from coordinator.reports import config_dump, context_tree, metrics_snapshot, run_summary
from coordinator.reports.markdown import write_report
from protocol.bucket_include import IncludeFile

if TYPE_CHECKING:
    from coordinator.service import Service


@dataclass(frozen=True)
class ReportInputs:
    """What the reports need, gathered on the loop (cheap, consistent); the rest is done by `write_reports`,
    off the loop."""

    directory: Path
    db_path: Path
    config: Config
    status: dict[str, Any]
    snapshot: dict[str, Any]
    run_id: str
    started_wall: float
    wall: float
    grep_counts: dict[str, dict[str, int]]
    config_path: Path | None
    overrides: dict[str, Any]
    sandbox_reports: list[Any]
    sandbox_required: list[str]


def gather(
    service: Service,
    snapshot: dict[str, Any],
    *,
    run_id: str,
    started_wall: float,
    wall: float,
    grep_counts: dict[str, dict[str, int]],
) -> ReportInputs:
    """Take what the reports need from the running service, now (on the loop's thread)."""
    from coordinator.commands import status as status_command  # (one definition of the status picture)

    return ReportInputs(
        directory=service.state_dir / "reports",
        db_path=service.state_dir / "queue.db",
        config=service.config,  # (a reload replaces the object; it is never changed in place)
        status=status_command.handle(service, {}),
        snapshot=snapshot,
        run_id=run_id,
        started_wall=started_wall,
        wall=wall,
        grep_counts={bucket: dict(rules) for bucket, rules in grep_counts.items()},
        config_path=getattr(service, "_config_path", None),
        overrides=dict(getattr(service, "_overrides", {}) or {}),
        sandbox_reports=list(service.sandbox_reports),
        sandbox_required=list(service.sandbox_required),
    )


class ReportThread:
    """Writes the reports on a thread of its own, one run at a time: the bucket walks and a count over the
    whole jobs table take a tenth of a second to seconds, which the loop must not wait for. A snapshot that
    finds the previous reports still being written skips its own (counted)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self.skipped = 0
        self.runs = 0

    def submit(self, inputs: ReportInputs) -> bool:
        """Start writing; False when the previous run is still going (this one is skipped)."""
        if self._thread is not None and self._thread.is_alive():
            self.skipped += 1
            return False
        self._thread = threading.Thread(target=self._run, args=(inputs,), name="reports", daemon=True)
        self._thread.start()
        return True

    def finish(self, inputs: ReportInputs | None, timeout: float = 30.0) -> None:
        """At shutdown: wait for a run in progress, then write `inputs` here, so the last reports on disk
        describe the whole run."""
        if self._thread is not None:
            self._thread.join(timeout)
        if inputs is not None:
            self._run(inputs)

    def _run(self, inputs: ReportInputs) -> None:
        try:
            write_reports(inputs)
            self.runs += 1
        except Exception:  # a report must never take anything down
            logger.exception("the reports could not be written")


def write_reports(inputs: ReportInputs) -> list[Path]:
    """Write every report; return the files written. A report that fails is logged and skipped."""
    directory, config, status, wall, run_id = (
        inputs.directory,
        inputs.config,
        inputs.status,
        inputs.wall,
        inputs.run_id,
    )
    written: list[Path] = []

    def write(name: str, make: Any) -> None:
        try:
            written.append(write_report(directory, name, make()))
        except Exception:  # one report failing must not stop the others
            logger.exception("report {} could not be written", name)

    bucket_counts, recent = _from_queue(inputs.db_path)
    write(
        "RUN_SUMMARY.md",
        lambda: run_summary.render_run_summary(
            run_id=run_id,
            started=inputs.started_wall,
            generated=wall,
            status=status,
            metrics=inputs.snapshot,
            bucket_counts=bucket_counts,
            recent_errors=recent,
        ),
    )
    capacity = metrics_snapshot.Capacity(
        workers=status["workers"].get("total", 0),
        busy=status["workers"].get("busy", 0),
        queue_depth=status["jobs"].get("queued", 0),
    )
    write(
        "METRICS_SNAPSHOT.md",
        lambda: metrics_snapshot.render_metrics_snapshot(
            inputs.snapshot, generated=wall, capacity=capacity, run_id=run_id
        ),
    )
    skip = context_tree.skip_dirs(config)
    walks = {
        b.name: context_tree.walk_bucket(b.path.expanduser().absolute(), skip=skip) for b in config.buckets
    }
    grep_counts = inputs.grep_counts
    for bucket, walk in walks.items():
        write(
            context_tree.context_tree_name(bucket),
            lambda bucket=bucket, walk=walk: context_tree.render_context_tree(
                bucket,
                walk,
                generated=wall,
                grep_counts=grep_counts.get(bucket, {}),
                grep_tags=context_tree.grep_tags_for(config, bucket),
            ),
        )
    write(
        "CONTEXT_TREE.md",
        lambda: context_tree.render_context_index(walks, generated=wall, grep_counts=grep_counts),
    )
    _remove_gone_pages(directory, {context_tree.context_tree_name(b) for b in walks})
    write(
        "CONFIG_DUMP.md",
        lambda: config_dump.render_config_dump(
            config,
            generated=wall,
            sources=provenance.config_sources(inputs.config_path, inputs.overrides),
            config_path=provenance.config_file(inputs.config_path),
            validation_error=provenance.validation_error(inputs.config_path, inputs.overrides),
            checks=config_dump.sandbox_checks(inputs.sandbox_reports, inputs.sandbox_required),
            run_id=run_id,
            include_rules=_include_rules(config),
        ),
    )
    return written


def _include_rules(config: Config) -> dict[str, list[IncludeFile]] | None:
    """Each bucket's `.bucket-include` files, parsed (None when reading them is off)."""
    if not config.notes.bucket_include:
        return None
    profile = profile_of(config)
    return {b.name: bucket_rule_files(os.path.abspath(b.path.expanduser()), profile) for b in config.buckets}


def _from_queue(db_path: Path) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    """Jobs by state per bucket, and the last five errors, through a read-only connection of our own
    (WAL: beside the loop's writer, never blocking it)."""
    try:
        db = connect(db_path, readonly=True)
    except sqlite3.Error:
        return {}, []
    try:
        return _bucket_counts(db), _recent_errors(db)
    finally:
        db.close()


def _bucket_counts(db: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Jobs by state per bucket, from the queue's own connection (what it has committed)."""
    out: dict[str, dict[str, int]] = {}
    for bucket, state, n in db.execute("SELECT bucket, state, COUNT(*) FROM jobs GROUP BY bucket, state"):
        out.setdefault(str(bucket), {})[str(state)] = int(n)
    return out


def _recent_errors(db: sqlite3.Connection) -> list[dict[str, Any]]:
    try:
        return queries.errors(db, limit=5)
    except sqlite3.Error:
        return []


def _remove_gone_pages(directory: Path, keep: set[str]) -> None:
    for page in directory.glob("CONTEXT_TREE-*.md"):
        if page.name not in keep:
            page.unlink(missing_ok=True)
