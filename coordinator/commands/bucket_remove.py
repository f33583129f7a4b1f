"""`ob-ctl bucket remove NAME_OR_DIR [--cancel]` (wire name `bucket-remove`): stop watching a bucket now.

Its running jobs finish. Its queued jobs are parked (kept, not handed out, across restarts too) until a
bucket of that name returns, by `bucket add` or a reload; with `--cancel` each ends instead with an ERROR
record of category Cancelled, so every file still has exactly one terminal record.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, absolute_path
from coordinator.live import Refused

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "stop watching a bucket; its queued jobs are parked (or, with --cancel, ended with an ERROR record)"
WIRE = "bucket-remove"


class _NameOrDir(argparse.Action):
    """Keeps the argument as given (a name) and, in `path`, as a directory made absolute here: the
    coordinator may run in another directory."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        namespace.bucket = values
        namespace.path = absolute_path(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Which bucket, and what becomes of its queued jobs."""
    parser.add_argument(
        "bucket", action=_NameOrDir, metavar="NAME_OR_DIR", help="the bucket's name, or its directory"
    )
    parser.add_argument(
        "--cancel", action="store_true", help="end its queued jobs with a Cancelled ERROR record each"
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Remove the bucket, or say in one line why not."""
    target = args.get("bucket")
    if not isinstance(target, str) or not target:
        raise CommandError(f"a bucket is named by its name or directory, not {target!r}")
    path = args.get("path")
    try:
        return service.live.remove_bucket(
            target, path if isinstance(path, str) else None, cancel=args.get("cancel") is True
        )
    except Refused as exc:
        raise CommandError(str(exc)) from None


def render(result: dict[str, Any]) -> str:
    """One line."""
    parts = [f"bucket {result['bucket']} removed"]
    if result["cancelled"]:
        parts.append(f"{result['cancelled']} queued job(s) cancelled (an ERROR record each)")
    if result["parked"]:
        parts.append(
            f"{result['parked']} queued job(s) parked until a bucket named {result['bucket']} returns"
        )
    if result["running"]:
        parts.append(f"{result['running']} running job(s) finish")
    return "; ".join(parts)
