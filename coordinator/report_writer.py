"""Writes the markdown reports into `<state-dir>/reports/` at every snapshot and at shutdown: gathers what
each one needs from the running service and hands it to the pure renderers in `coordinator.reports`.

    RUN_SUMMARY.md           the run: buckets with file counts, processing, queue, errors, performance
    METRICS_SNAPSHOT.md      the snapshot: counters, gauges, histograms, rates, errors, alerts, capacity
    CONTEXT_TREE.md          an index of the buckets' pages, and CONTEXT_TREE-<bucket>.md for each one
    CONFIG_DUMP.md           every setting with its source (default, file, cli), validation and checks

The bucket walks are bounded (`context_tree.walk_bucket`: 20,000 entries each), so a big bucket costs the
loop a tenth of a second per snapshot at most. A page of a bucket that is gone is removed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from coordinator import provenance, queries
from coordinator.reports import config_dump, context_tree, metrics_snapshot, run_summary
from coordinator.reports.markdown import write_report

if TYPE_CHECKING:
    from coordinator.service import Service


def write_reports(
    service: Service,
    snapshot: dict[str, Any],
    *,
    run_id: str,
    started_wall: float,
    wall: float,
    grep_counts: dict[str, dict[str, int]],
) -> list[Path]:
    """Write every report; return the files written. A report that fails is logged and skipped."""
    from coordinator.commands import status as status_command  # (one definition of the status picture)

    directory = service.state_dir / "reports"
    config = service.config
    status = status_command.handle(service, {})
    written: list[Path] = []

    def write(name: str, make: Any) -> None:
        try:
            written.append(write_report(directory, name, make()))
        except Exception:  # a report must never stop the loop (or the others)
            logger.exception("report {} could not be written", name)

    write(
        "RUN_SUMMARY.md",
        lambda: run_summary.render_run_summary(
            run_id=run_id,
            started=started_wall,
            generated=wall,
            status=status,
            metrics=snapshot,
            bucket_counts=_bucket_counts(service.jobs.db),
            recent_errors=_recent_errors(service.jobs.db),
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
            snapshot, generated=wall, capacity=capacity, run_id=run_id
        ),
    )
    skip = context_tree.skip_dirs(config)
    walks = {
        b.name: context_tree.walk_bucket(b.path.expanduser().absolute(), skip=skip) for b in config.buckets
    }
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
    config_path = getattr(service, "_config_path", None)
    overrides = getattr(service, "_overrides", {}) or {}
    write(
        "CONFIG_DUMP.md",
        lambda: config_dump.render_config_dump(
            config,
            generated=wall,
            sources=provenance.config_sources(config_path, overrides),
            config_path=provenance.config_file(config_path),
            validation_error=provenance.validation_error(config_path, overrides),
            checks=config_dump.sandbox_checks(service.sandbox_reports, service.sandbox_required),
            run_id=run_id,
        ),
    )
    return written


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
