"""`ob-ctl restart-worker SLOT` (wire name `restart-worker`): replace one slot's worker gracefully.

A busy worker finishes its job first; a failed or restarting slot starts at once, its restart history
forgotten (supervisord's FATAL needs a `start`; ours also comes back by itself after a cool-down).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, add_slot_argument, requested_slot

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "restart one worker gracefully (it finishes its job first); starts a failed slot at once"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Which slot."""
    add_slot_argument(parser)


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Restart the slot's worker."""
    index = requested_slot(args)
    try:
        how = service.supervisor.restart_slot(index, service.clock())
    except (KeyError, RuntimeError) as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    return {"slot": index, "action": how}


def render(result: dict[str, Any]) -> str:
    """One line."""
    what = {
        "starting": "starting a new worker now",
        "restarting": "its worker is asked to exit; a new one follows",
        "draining": "its worker finishes its job, then a new one follows",
    }
    return f"slot {result['slot']}: {what.get(result['action'], result['action'])}"
