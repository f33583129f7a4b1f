"""`ob-ctl breaker reset SLOT` (wire name `breaker-reset`): close one slot's circuit breaker by hand."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, add_slot_argument, requested_slot

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "close one slot's circuit breaker now"
WIRE = "breaker-reset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Which slot."""
    add_slot_argument(parser)


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Reset the breaker."""
    index = requested_slot(args)
    try:
        slot = service.supervisor.find(index)
    except KeyError as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    was = slot.breaker.state.value
    service.supervisor.reset_breaker(index, service.clock())
    return {"slot": index, "was": was, "state": slot.breaker.state.value}


def render(result: dict[str, Any]) -> str:
    """One line."""
    if result["was"] == result["state"]:
        return f"slot {result['slot']}: breaker was already {result['state']}"
    return f"slot {result['slot']}: breaker {result['was']} -> {result['state']}"
