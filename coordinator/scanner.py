"""A directory walk for the watcher's scans: `os.scandir` with an explicit stack, never following symlinks.

Why not `os.walk`: we want the `DirEntry` objects (their cached type saves a syscall per directory, and the
caller stats only the names its filters keep), a prune hook that sees full paths, and errors reported per
directory instead of silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator


def walk(
    top: str,
    *,
    prune: Callable[[str, str], bool],
    on_error: Callable[[str, OSError], None],
) -> Iterator[list[os.DirEntry[str]]]:
    """Yield, directory by directory, the non-directory entries below `top` (symlinks, FIFOs and the like
    included, never followed).

    One list per directory rather than one entry at a time: a scan of 100,000 files would otherwise pay a
    generator round trip per file. `prune(path, name)` is asked about each subdirectory; True skips it and
    everything below it. A failure to list `top` itself raises `OSError` (the caller decides what a missing
    bucket means); failures below it go to `on_error`, except a directory that vanished mid-walk, which is
    simply no longer there.
    """
    stack = [top]
    first = True
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            if first:
                raise
            continue
        except OSError as exc:  # cannot open it, or a failing readdir (EIO on a flaky mount): skip it
            if first:
                raise
            on_error(current, exc)
            continue
        first = False
        files = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False  # let the caller's lstat find out what it is, or that it is gone
            if not is_dir:
                files.append(entry)
            elif not prune(entry.path, entry.name):
                stack.append(entry.path)
        if files:
            yield files
