"""`ob-ctl errors [list | stats | resolve ID ...]`: ERROR records newest first, from the records index
(works with the service stopped); `stats` is the error tracker's aggregates (`errors_stats`), `resolve`
marks records resolved through the coordinator (`errors_resolve`), the queue's only writer."""

from __future__ import annotations

import argparse
import time
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

from coordinator import queries
from coordinator.commands import common, errors_resolve, errors_stats
from coordinator.commands.table import clip, human_time, render_table

HELP = (
    "ERROR records newest first: time, job, category, file, message, resolved; retried ones are marked "
    "superseded (`stats` for counts, `resolve ID` to mark them resolved)"
)

#: Sub-actions: None is this command itself, spelled out; a module is what the action runs.
ACTIONS: dict[str, ModuleType | None] = {"list": None, "stats": errors_stats, "resolve": errors_resolve}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--since, --category, --unresolved, --limit."""
    parser.add_argument(
        "--since", type=common.duration, metavar="DURATION", help="only this recent: 30s, 15m, 1h, 2d"
    )
    parser.add_argument("--category", help="only this category (FileAccess, WorkerCrash, Timeout, ...)")
    parser.add_argument("--unresolved", action="store_true", help="only the records nobody resolved yet")
    parser.add_argument("--limit", type=common.limit, default=50, metavar="N", help="at most N rows (0: all)")


def local(state_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows, read in this process."""
    since = None if args.since is None else time.time() - args.since
    with closing(queries.open_queue(state_dir)) as conn:
        return queries.errors(
            conn, since=since, category=args.category, unresolved=args.unresolved, limit=args.limit
        )


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a table."""
    if not rows:
        return "no errors"
    headers = ["time", "job", "state", "category", "severity", "bucket", "relpath", "message", "superseded"]
    headers.append("resolved")
    table = [
        [
            human_time(r["timestamp"]),
            r["job_id"],
            r["state"],
            r["category"],
            r["severity"],
            r["bucket"],
            r["relpath"],
            clip(r["message"]),
            "yes" if r["superseded"] else "",
            "yes" if r["resolved"] else "",
        ]
        for r in rows
    ]
    return render_table(headers, table)
