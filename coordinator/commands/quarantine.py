"""`ob-ctl quarantine [list | release JOB_ID]`: the jobs that killed their workers, and letting one go.

`list` (the default) reads the queue database in `ob-ctl` itself, like `jobs`; `release` is the
coordinator's `release` request (`coordinator.commands.release`), since only the coordinator writes the
queue.
"""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

from coordinator import queries
from coordinator.commands import release
from coordinator.commands.table import clip, human_time, render_table

HELP = "list quarantined jobs (the default), or `release JOB_ID` to queue one again"

#: Sub-actions: None is this command itself, spelled out; a module is the control request it becomes.
ACTIONS: dict[str, ModuleType | None] = {"list": None, "release": release}


def local(state_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The quarantined jobs, read in this process."""
    with closing(queries.open_queue(state_dir)) as conn:
        return queries.quarantined(conn)


def render(rows: list[dict[str, Any]]) -> str:
    """The quarantined jobs as a table."""
    if not rows:
        return "no quarantined jobs"
    headers = ["id", "bucket", "relpath", "kills", "last error", "record", "path", "since"]
    table = [
        [
            r["id"],
            r["bucket"],
            r["relpath"],
            r["kills"],
            clip(r["last_error"]),
            r["record"],
            r["path"],
            human_time(r["finished_at"]),
        ]
        for r in rows
    ]
    return render_table(headers, table)
