"""`ob-ctl bucket add DIR [--name N] [--patterns GLOB ...] [--ignore GLOB ...] [--output DIR] [--create]`
(wire name `bucket-add`): watch one more bucket now, until the next restart or reload.

Checked like a `[[buckets]]` table of the config file (every rule of `coordinator.config`), and refused
when it would move a running bucket's notes (a second bucket sharing `service.output`: give `--output`),
when it lies in or holds the state dir or a notes dir, or when its notes would land in a bucket.
Paths are made absolute here, in `ob-ctl`: the coordinator may run in another directory.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError, absolute_path
from coordinator.live import Refused

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "watch one more directory now (until the next restart or reload)"
WIRE = "bucket-add"

#: Request fields that become the bucket's config fields, as a `[[buckets]]` table spells them.
_FIELDS = ("path", "name", "patterns", "ignore", "output", "create")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The directory and the bucket's settings."""
    parser.add_argument("path", type=absolute_path, metavar="DIR", help="the directory to watch")
    parser.add_argument("--name", help="the bucket's name (default: the directory's name)")
    parser.add_argument("--patterns", nargs="+", metavar="GLOB", help='files to take (default: "*")')
    parser.add_argument("--ignore", nargs="+", metavar="GLOB", help="files to leave alone")
    parser.add_argument(
        "--output", type=absolute_path, metavar="DIR", help="its own notes dir (default: service.output)"
    )
    parser.add_argument(
        "--create",
        action="store_true",
        default=None,
        help="make the directory's missing parents too (a typo otherwise fails instead of making a tree)",
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Add the bucket, or say in one line why not."""
    fields = {key: args[key] for key in _FIELDS if args.get(key) is not None}
    try:
        return service.live.add_bucket(fields)
    except Refused as exc:
        raise CommandError(str(exc)) from None


def render(result: dict[str, Any]) -> str:
    """Two lines: the bucket, and how long it lasts."""
    held = (
        "; its files wait until every worker's sandbox reaches it (workers are replaced in turn)"
        if result.get("held_back")
        else ""
    )
    return (
        f"bucket {result['name']} added: {result['path']} -> {result['output']}{held}\n"
        "until the next restart or reload: add it to the config file to keep it"
    )
