"""`ob-ctl jobs`: jobs newest first, straight from the queue database (works with the service stopped)."""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path
from typing import Any

from coordinator import queries
from coordinator.commands import common
from coordinator.commands.table import clip, human_time, render_table
from coordinator.states import JobState

HELP = "jobs newest first: state, file, attempts, worker deaths, last error, record"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--state, --bucket, --limit."""
    parser.add_argument("--state", choices=[s.value for s in JobState], help="only jobs in this state")
    parser.add_argument("--bucket", metavar="NAME", help="only jobs of this bucket")
    parser.add_argument("--limit", type=common.limit, default=50, metavar="N", help="at most N rows (0: all)")


def local(state_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows, read in this process."""
    with closing(queries.open_queue(state_dir)) as conn:
        return queries.jobs(conn, state=args.state, bucket=args.bucket, limit=args.limit)


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a table."""
    if not rows:
        return "no jobs"
    headers = ["id", "state", "bucket", "relpath", "attempts", "kills", "worker", "last error", "record"]
    headers += ["created", "finished"]
    table = [
        [
            r["id"],
            r["state"],
            r["bucket"],
            r["relpath"],
            r["attempts"],
            r["kills"],
            r["worker"],
            clip(r["last_error"], 50),
            r["record"],
            human_time(r["created_at"]),
            human_time(r["finished_at"]),
        ]
        for r in rows
    ]
    return render_table(headers, table)
