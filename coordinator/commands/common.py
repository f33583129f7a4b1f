"""What the command modules share: the error a handler raises to refuse a request, and the argument types
of `ob-ctl` (each turns a string into a value or raises `argparse.ArgumentTypeError` with the message that
`ob-ctl` prints as its one line)."""

from __future__ import annotations

import argparse
import os

from coordinator.queries import parse_duration
from coordinator.queries import record_ref as parse_record_ref


class CommandError(Exception):
    """A request the coordinator refuses (no such job, wrong state): `str()` is the reply's one-line error,
    and the control server logs no traceback for it, since nothing is broken."""


def job_id(text: str) -> int:
    """A job id: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a job id: {text!r} (job ids are positive integers)")
    return value


def record_ref(text: str) -> int | str:
    """A job id (all of its ERROR records) or a record file's name (that one record)."""
    try:
        return parse_record_ref(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def limit(text: str) -> int:
    """How many rows to show: a non-negative integer, 0 for all."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a row count: {text!r} (a whole number, 0 for all)")
    return value


def duration(text: str) -> float:
    """A duration such as 30s, 15m, 1h or 2d, in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def absolute_path(text: str) -> str:
    """A directory as `ob-ctl` was given it, made absolute against ob-ctl's own working directory (the
    coordinator's may be another one)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return os.path.abspath(os.path.expanduser(text))


def slot_index(text: str) -> int:
    """A worker slot number: a non-negative integer."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a slot number: {text!r} (see ob-ctl workers)")
    return value


def slot_count(text: str) -> int:
    """A number of workers: 1 to 256."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"not a worker count: {text!r} (a whole number from 1 to 256)")
    return value


def add_slot_argument(parser: argparse.ArgumentParser) -> None:
    """The SLOT positional of commands about one worker slot."""
    parser.add_argument("slot", type=slot_index, metavar="SLOT", help="the slot number (see ob-ctl workers)")


def requested_slot(args: dict[str, object]) -> int:
    """The slot a request names, or a CommandError (the socket may carry anything)."""
    index = args.get("slot")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise CommandError(f"a slot is a whole number, not {index!r}")
    return index
