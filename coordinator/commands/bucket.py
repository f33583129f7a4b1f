"""`ob-ctl bucket [list | add DIR | remove NAME_OR_DIR]`: the buckets the running service watches, and
changing them without a restart.

A bucket added here lasts until the next restart or reload: the config file is the truth. A removed
bucket's queued jobs are parked (kept, not handed out) until a bucket of that name returns, or cancelled
with `--cancel`; `list` shows how many are parked, for buckets that are gone too.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from coordinator.commands import bucket_add, bucket_remove
from coordinator.commands.table import render_table

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "the watched buckets (the default), or `add DIR` / `remove NAME_OR_DIR` at run time"

#: Sub-actions: None is this command itself, spelled out; a module is the control request it becomes.
ACTIONS: dict[str, ModuleType | None] = {"list": None, "add": bucket_add, "remove": bucket_remove}


def handle(service: Service, args: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The running buckets, and the parked jobs of buckets that are gone."""
    return service.live.rows()


def render(result: dict[str, list[dict[str, Any]]]) -> str:
    """A table of buckets, and a line for each gone bucket with parked jobs."""
    headers = ["name", "path", "output", "patterns", "ignore", "queued", "parked"]
    rows = [
        [
            r["name"],
            r["path"],
            r["output"],
            " ".join(r["patterns"]),
            " ".join(r["ignore"]),
            r["queued"],
            r["parked"],
        ]
        for r in result["buckets"]
    ]
    lines = [render_table(headers, rows)]
    lines += [
        f"removed bucket {g['name']}: {g['parked']} queued job(s) parked until a bucket of that name returns"
        for g in result["gone"]
    ]
    return "\n".join(lines)
