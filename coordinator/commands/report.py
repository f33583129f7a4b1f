"""`ob-ctl report [--since 24h] [--group-by bucket|skill|type]`: the success tracker's report
(`coordinator.success_stats`), read from the records index in this process, so it works with the service
stopped."""

from __future__ import annotations

import argparse
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from coordinator import queries
from coordinator.commands import common
from coordinator.commands.table import human_bytes, human_time, render_table
from coordinator.success_stats import GROUPS, success_report

HELP = (
    "processed, successful, failed, quarantined, success rate, average duration and bytes, overall and "
    "per bucket, skill or file type"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--since, --group-by."""
    parser.add_argument(
        "--since", type=common.duration, metavar="DURATION", help="only this recent: 30s, 15m, 1h, 2d"
    )
    parser.add_argument("--group-by", choices=sorted(GROUPS), help="one row per bucket, skill or file type")


def local(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The report, read in this process."""
    now = time.time()
    since = None if args.since is None else now - args.since
    with closing(queries.open_queue(state_dir)) as conn:
        return success_report(conn, now=now, since=since, group_by=args.group_by)


def render(report: dict[str, Any]) -> str:
    """The overall figures as one row, then one row per group."""
    window = "all time" if report["since"] is None else f"since {human_time(report['since'])}"
    headers = ["processed", "successful", "failed", "quarantined", "success", "avg duration", "bytes"]
    lines = [f"files processed ({window})", render_table(headers, [_figures(report["overall"])])]
    if report["group_by"] is not None:
        rows = [[_group_name(g["group"]), *_figures(g)] for g in report["groups"]]
        lines += ["", render_table([report["group_by"], *headers], rows)]
    return "\n".join(lines)


def _figures(row: dict[str, Any]) -> list[object]:
    rate, avg = row["success_rate"], row["avg_duration_s"]
    return [
        row["processed"],
        row["successful"],
        row["failed"],
        row["quarantined"],
        None if rate is None else f"{rate:.1%}",
        None if avg is None else f"{avg * 1000:.1f} ms",
        human_bytes(row["bytes"]),
    ]


def _group_name(group: str | None) -> str:
    # Failures carry no skill or type (the worker that failed reported none): they are grouped together.
    return "(none)" if group is None else group
