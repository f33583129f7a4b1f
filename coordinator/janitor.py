"""Removing what a worker left in its scratch dir: safely, and off the coordinator's loop.

A scratch dir is written by untrusted code, so removing it must not trust it:
- nothing is followed: entries are unlinked by name relative to an open directory, and a directory is
  opened with O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, so a symlink, or a FIFO swapped in for a directory,
  is refused at once instead of followed or blocked on (shutil.rmtree on Python 3.11 opens directories
  with a plain O_RDONLY, and an open of a FIFO blocks until a writer comes);
- nothing blocks the loop: the dir is renamed into `trash/` (one rename) and a daemon thread removes it,
  so a worker that created a million files costs the coordinator's loop nothing but a little GIL time;
- nesting is bounded: past `MAX_DEPTH` levels the rest is left, and said so in the log.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from pathlib import Path

from loguru import logger

#: Flags for opening a directory we are about to empty: never a symlink, never a FIFO that blocks.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 256


def remove_tree(path: Path) -> bool:
    """`rm -rf path`, following nothing; True when it is gone."""
    try:
        parent = os.open(path.parent, DIR_FLAGS)
    except OSError:
        return not os.path.lexists(path)
    try:
        _remove(parent, path.name, 0)
    finally:
        os.close(parent)
    return not os.path.lexists(path)


def _remove(dir_fd: int, name: str, depth: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)  # a file, symlink, FIFO or socket: gone without being opened
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        pass  # a directory (Linux says EISDIR; some systems EPERM)
    if depth >= MAX_DEPTH:
        logger.warning("not removing past {} nested directories (at {!r})", MAX_DEPTH, name)
        return
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:  # swapped for something else since: one more unlink, then leave it
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        return
    try:
        for entry in os.listdir(fd):
            _remove(fd, entry, depth + 1)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


class Janitor:
    """Moves dirs into `trash` at once and removes them on a daemon thread."""

    def __init__(self, trash: Path) -> None:
        self.trash = trash
        self._todo: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Empty the trash a previous run left, then start removing in the background."""
        self.trash.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in sorted(self.trash.iterdir()):
            self._todo.put(leftover)
        self._thread = threading.Thread(target=self._run, name="janitor", daemon=True)
        self._thread.start()

    def discard(self, path: Path) -> None:
        """Take `path` away now (a rename) and remove it soon; never raises."""
        target = self.trash / f"{path.name}.{next(self._count)}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("cannot move {} to the trash: {}", path, exc)
            return
        self._todo.put(target)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, for at most `timeout` seconds (the rest waits for the next start)."""
        if self._thread is None:
            return
        self._todo.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while (path := self._todo.get()) is not None:
            try:
                if not remove_tree(path):
                    logger.warning("could not remove all of {}", path)
            except Exception as exc:  # noqa: BLE001 - the janitor must outlive any one bad tree
                logger.warning("removing {} failed: {}", path, exc)
