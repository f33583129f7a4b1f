"""`ob-ctl breaker [list | reset SLOT]`: every slot's circuit breaker, and closing one by hand."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from coordinator.commands import breaker_reset
from coordinator.commands.table import render_table

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "circuit breakers by slot (the default), or `reset SLOT` to close one"

ACTIONS: dict[str, ModuleType | None] = {"list": None, "reset": breaker_reset}


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Every working slot's breaker, and the fleet guard."""
    now = service.clock()
    sup = service.supervisor
    return {
        "slots": [{"slot": s.index} | s.breaker.row(now) for s in sup.slots],
        "fleet": sup.fleet.row(now),
    }


def render(result: dict[str, Any]) -> str:
    """A table, and a line for the fleet guard."""
    headers = ["slot", "breaker", "next probe", "failures in a row", "window", "opened"]
    rows = [
        [
            r["slot"],
            r["state"] + (" (probing)" if r.get("probing") else ""),
            None if r.get("retry_in_s") is None else f"{r['retry_in_s']:.1f}s",
            r["consecutive_failures"],
            f"{r['window_failures']}/{r['window_size']}",
            r["opened"],
        ]
        for r in result["slots"]
    ]
    fleet = result["fleet"]
    if fleet["paused"]:
        probe = "" if fleet.get("retry_in_s") is None else f"; next probe in {fleet['retry_in_s']:.1f}s"
        line = f"fleet: PAUSED: {fleet['reason']}{probe}"
    else:
        line = "fleet: dispatching"
    return render_table(headers, rows) + "\n" + line
