"""Where a bucket added to a running service may go, and whose notes a change would move.

At start the watcher is told every directory to leave alone (the state dir, every notes dir, processed/ and
quarantine/), so a bucket may even hold its own output. A bucket added at run time (`ob-ctl bucket add`, or a
reload) comes with a notes dir the running watcher has never heard of, and a worker sandbox that must allow
it, so the rules are stricter and simpler: a new bucket neither lies in nor holds the state dir or any notes
dir, it is not nested with another bucket, its notes dir neither lies in nor holds a bucket or our own
state, processed or quarantine dirs, and no two buckets write into each other's notes.

And the notes dir of a bucket that is already running never moves under it (`moved_outputs`): its notes
so far would be left behind in the old place, and its queued jobs would write to the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.config import BucketConfig, Config


def placement_problem(config: Config, bucket: BucketConfig) -> str | None:
    """Why `bucket` (one of `config.buckets`, about to be added to a running service) cannot go where it
    is, in one line; None when it can."""
    root = _real(bucket.path)
    output = _real(config.bucket_output(bucket))
    others = [b for b in config.buckets if b.name != bucket.name]
    for other in others:
        theirs = _real(other.path)
        if theirs == root:
            return f"{root} is already the root of bucket {other.name!r}"
        # Nested buckets are for the start only: at run time the outer bucket has already queued (or
        # processed) files the inner one would take again as its own.
        if overlap(root, theirs):
            return f"{root} and bucket {other.name!r} ({theirs}) are nested; nest buckets in the config file"
    guarded = [
        ("the state dir", _real(config.service.state_dir)),
        ("the processed dir", _real(config.processed_dir())),
        ("the quarantine dir", _real(config.quarantine_dir())),
        ("service.output", _real(config.service.output)),
        ("its own notes dir", output),
        *((f"bucket {o.name!r}'s notes dir", _real(config.bucket_output(o))) for o in others),
    ]
    for what, directory in guarded:
        if _within(root, directory):
            return f"{root} is inside {what} {directory}"
        if _within(directory, root):
            return f"{root} holds {what} {directory}"
    for what, directory in guarded[:3]:  # workers may write in a notes dir: never in our own state
        if overlap(output, directory):
            return f"its notes dir {output} overlaps {what} {directory}"
    for other in others:
        if overlap(output, _real(other.path)):
            return f"its notes dir {output} and bucket {other.name!r} ({other.path}) are nested"
        theirs = _real(config.bucket_output(other))
        if overlap(output, theirs):
            return f"its notes dir {output} overlaps bucket {other.name!r}'s notes dir {theirs}"
    return None


def moved_outputs(old: Config, new: Config) -> list[tuple[str, Path, Path]]:
    """(name, old notes dir, new notes dir) of each bucket in both configs whose notes dir would change."""
    before = {b.name: old.bucket_output(b) for b in old.buckets}
    return [
        (b.name, before[b.name], new.bucket_output(b))
        for b in new.buckets
        if b.name in before and new.bucket_output(b) != before[b.name]
    ]


def overlap(a: str | Path, b: str | Path) -> bool:
    """Whether one directory is the other or lies below it."""
    a, b = os.fspath(a), os.fspath(b)
    return _within(a, b) or _within(b, a)


def _real(path: Path) -> str:
    # Real paths: a directory named through a symlink is still the same directory.
    return os.path.realpath(path.expanduser())


def _within(inner: str, outer: str) -> bool:
    return os.path.commonpath([inner, outer]) == outer
