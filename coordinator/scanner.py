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
) -> Iterator[os.DirEntry[str]]:
    """Yield every non-directory entry below `top` (symlinks, FIFOs and the like included, never followed).

    `prune(path, name)` is asked about each subdirectory; True skips it and everything below it. A failure
    to list `top` itself raises `OSError` (the caller decides what a missing bucket means); failures below
    it go to `on_error`, except a directory that vanished mid-walk, which is simply no longer there.
    """
    stack = [top]
    first = True
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError):
            if first:
                raise
            continue
        except OSError as exc:
            if first:
                raise
            on_error(current, exc)
            continue
        first = False
        with it:
            while True:
                try:
                    entry = next(it)
                except StopIteration:
                    break
                except OSError as exc:  # a failing readdir (EIO on a flaky mount): give up on this directory
                    on_error(current, exc)
                    break
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False  # let the caller's lstat find out what it is, or that it is gone
                if is_dir:
                    if not prune(entry.path, entry.name):
                        stack.append(entry.path)
                else:
                    yield entry
