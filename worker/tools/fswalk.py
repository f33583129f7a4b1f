"""Walking a bucket's tree without ever following a symlink, within bounds.

Every directory is opened relative to its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, so a
directory swapped for a symlink between the listing and the open is refused by the kernel (ENOTDIR), not
followed out of the bucket; symlinks are neither yielded nor entered. The walk counts every entry it sees
and stops at `max_entries`, and does not go below `max_depth`; `WalkState.bound` then says which bound was
hit, so callers can say their answer is incomplete. At most one descriptor per level is open at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: Entries (files, directories, anything) a walk looks at before it stops.
MAX_ENTRIES = 100_000
#: Directory levels below the start a walk enters.
MAX_DEPTH = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass
class WalkState:
    """What a walk saw: entries counted, the bound it hit ("" if none), directories it could not read."""

    max_entries: int = MAX_ENTRIES
    max_depth: int = MAX_DEPTH
    entries: int = 0
    stopped: bool = False  # the entry bound was hit: nothing more was looked at
    bound: str = ""
    unreadable: list[str] = field(default_factory=list)


def open_dir(name: str, dir_fd: int | None = None, *, follow: bool = False) -> int:
    """Open a directory for walking, refusing a symlink (OSError ENOTDIR or ELOOP) unless `follow` (for a
    bucket's own root, which the operator chose, symlink or not)."""
    return os.open(name, _DIR_FLAGS & ~os.O_NOFOLLOW if follow else _DIR_FLAGS, dir_fd=dir_fd)


def walk_files(
    top_fd: int, state: WalkState, prune: Callable[[str], bool] = lambda _rel: False
) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """(path relative to the top, entry, descriptor of its directory) of each regular file below `top_fd`,
    each directory's files in name order before its subdirectories.

    `prune(relpath)` is asked of each directory before it is entered; True skips it and all below. The
    descriptor yielded is only valid until the next item is asked for. `top_fd` stays open (the caller's).
    """
    yield from _walk(top_fd, "", 0, state, prune)


def _walk(
    dir_fd: int, prefix: str, depth: int, state: WalkState, prune: Callable[[str], bool]
) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    entries: list[os.DirEntry[str]] = []
    try:
        # scandir on a descriptor works on its own duplicate: `dir_fd` stays open and ours.
        with os.scandir(dir_fd) as it:
            for entry in it:
                if state.entries >= state.max_entries:
                    state.stopped = True
                    state.bound = f"stopped after {state.max_entries:,} entries"
                    break
                state.entries += 1
                entries.append(entry)
    except OSError as exc:
        state.unreadable.append(f"{prefix or './'}: {exc.strerror or exc}")
        return
    # Name order, files first: the same tree is walked the same way every time.
    entries.sort(key=lambda e: e.name)
    subdirs: list[str] = []
    for entry in entries:
        rel = prefix + entry.name
        # follow_symlinks=False throughout: a symlink is neither a file nor a directory to us.
        if entry.is_dir(follow_symlinks=False):
            if not prune(rel):
                subdirs.append(entry.name)
        elif entry.is_file(follow_symlinks=False):
            yield rel, entry, dir_fd
    for name in subdirs:
        if state.stopped:
            return
        if depth + 1 > state.max_depth:
            state.bound = state.bound or f"not entered below depth {state.max_depth}"
            continue
        try:
            child = open_dir(name, dir_fd)
        except OSError as exc:  # vanished, unreadable, or swapped for a symlink since it was listed
            state.unreadable.append(f"{prefix}{name}/: {exc.strerror or exc}")
            continue
        try:
            yield from _walk(child, f"{prefix}{name}/", depth + 1, state, prune)
        finally:
            os.close(child)
