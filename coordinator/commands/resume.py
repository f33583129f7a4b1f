"""`ob-ctl resume`: hand out jobs again after `ob-ctl drain`, or after the fleet guard paused dispatch
(without waiting for its probe: the operator has looked)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "hand out jobs again (after drain, or after a restart storm paused dispatch)"


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Resume dispatch."""
    sup = service.supervisor
    was = {"drained": sup.paused is not None, "fleet_paused": sup.fleet.paused}
    sup.resume(service.clock())
    return {"resumed": True} | was


def render(result: dict[str, Any]) -> str:
    """One line."""
    if not result["drained"] and not result["fleet_paused"]:
        return "dispatch was not paused"
    return "resumed: jobs are handed out again"
