"""`ob-ctl drain`: give no worker a new job until `ob-ctl resume`. Workers finish what they hold, the
watcher keeps queueing new files, nothing is lost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "stop handing out jobs (workers finish what they hold; new files keep queueing) until resume"


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Pause dispatch."""
    sup = service.supervisor
    sup.drain()
    return {"paused": True, "busy": sum(s.job is not None for s in sup.slots)}


def render(result: dict[str, Any]) -> str:
    """One line."""
    return f"draining: no new jobs until `ob-ctl resume`; {result['busy']} worker(s) finishing their job"
