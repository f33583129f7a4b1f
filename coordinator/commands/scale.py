"""`ob-ctl scale N`: run N workers. New slots start at once (a ready spare first); surplus slots finish the
job they hold, then go, so no job is lost. Slot numbers are never reused."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, slot_count

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "run N workers: add slots, or drain surplus ones (they finish their job first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """How many workers."""
    parser.add_argument("workers", type=slot_count, metavar="N", help="the number of workers to run")


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Scale the supervisor's working slots."""
    n = args.get("workers")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 256:
        raise CommandError(f"a worker count is a whole number from 1 to 256, not {n!r}")
    try:
        change = service.supervisor.scale(n, service.clock())
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    return {"workers": n} | change


def render(result: dict[str, Any]) -> str:
    """One line."""
    parts = [f"scaling to {result['workers']} workers"]
    if result["added"]:
        parts.append(f"starting slot(s) {', '.join(map(str, result['added']))}")
    if result["removing"]:
        parts.append(
            f"draining slot(s) {', '.join(map(str, result['removing']))} (they finish their job first)"
        )
    if len(parts) == 1:
        parts.append("nothing to change")
    return ": ".join([parts[0], "; ".join(parts[1:])])
