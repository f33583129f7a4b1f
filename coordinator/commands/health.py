"""`ob-ctl health`: healthy, degraded or unhealthy, with the reasons; the exit code says which (0, 1, 2), so
a cron job or a container health check needs nothing else. 4 when the coordinator cannot be reached."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.commands.status import service_health

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "healthy / degraded / unhealthy and why; exit code 0 / 1 / 2 (4: no coordinator)"

EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """The roll-up."""
    health, reasons = service_health(service)
    return {"health": health, "reasons": reasons}


def render(result: dict[str, Any]) -> str:
    """'healthy', or the state and one reason a line."""
    return "\n".join([result["health"], *(f"- {r}" for r in result["reasons"])])


def exit_code(result: dict[str, Any]) -> int:
    """0 healthy, 1 degraded, 2 unhealthy."""
    return EXIT_CODES.get(result["health"], 2)
