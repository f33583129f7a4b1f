"""Removing what a worker left in its scratch dir: safely, and off the coordinator's loop.

A scratch dir is written by untrusted code, so removing it must not trust it:
- nothing is followed: entries are unlinked by name relative to an open directory, and a directory is
  opened with O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK, so a symlink, or a FIFO swapped in for a directory,
  is refused at once instead of followed or blocked on (shutil.rmtree on Python 3.11 opens directories
  with a plain O_RDONLY, and an open of a FIFO blocks until a writer comes);
- nothing blocks the loop: the dir is renamed into `trash/` (one rename) and a daemon thread removes it,
  so a worker that created a million files costs the coordinator's loop nothing but a little GIL time;
- nesting is bounded: a directory `MAX_DEPTH` levels down is moved up into the trash and removed from
  there, so no tree holds more than `MAX_DEPTH` of our descriptors, however deep it goes;
- a directory made unreadable (0o000) gets its owner's rights back first, through a descriptor that does
  not follow links.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from loguru import logger

#: Flags for opening a directory we are about to empty: never a symlink, never a FIFO that blocks.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 256


def remove_tree(path: Path, overflow: Callable[[int, str], None] | None = None) -> bool:
    """`rm -rf path`, following nothing; True when it is gone. A directory nested `MAX_DEPTH` deep is
    handed to `overflow(dir_fd, name)` (the janitor moves it up into the trash, to start again from there)
    instead of being recursed into, so no tree can hold more than `MAX_DEPTH` descriptors of ours."""
    try:
        parent = os.open(path.parent, DIR_FLAGS)
    except OSError:
        return not os.path.lexists(path)
    try:
        _remove(parent, path.name, 0, overflow)
    finally:
        os.close(parent)
    return not os.path.lexists(path)


def _remove(dir_fd: int, name: str, depth: int, overflow: Callable[[int, str], None] | None) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)  # a file, symlink, FIFO or socket: gone without being opened
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        pass  # a directory (Linux says EISDIR; some systems EPERM)
    if depth >= MAX_DEPTH:
        if overflow is not None:
            overflow(dir_fd, name)
        else:
            logger.warning("not removing past {} nested directories (at {!r})", MAX_DEPTH, name)
        return
    fd = _open_dir(dir_fd, name)
    if fd is None:  # swapped for something else since: one more unlink, then leave it
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        return
    try:
        with os.scandir(fd) as entries:
            names = [entry.name for entry in entries]
        for entry in names:
            _remove(fd, entry, depth + 1, overflow)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=dir_fd)


def _open_dir(dir_fd: int, name: str) -> int | None:
    """Open a directory to empty it; one its owner made unreadable (0o000: a worker can, to us running as
    the same user) is given back its owner's rights first, through an O_PATH descriptor (no following)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        pass
    except OSError:
        return None
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        os.chmod(f"/proc/self/fd/{handle}", 0o700)  # the directory the handle holds, whatever its name
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)  # still never a link, never a FIFO
    except OSError:
        return None
    finally:
        os.close(handle)


class Janitor:
    """Moves dirs into `trash` at once and removes them on a daemon thread."""

    def __init__(self, trash: Path) -> None:
        self.trash = trash
        self._todo: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._count = itertools.count()
        self._run_id = secrets.token_hex(4)  # names never collide with what an earlier run left
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
        target = self._new_name(path.name)
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

    def _new_name(self, name: str) -> Path:
        return self.trash / f"{name[:64]}.{self._run_id}.{next(self._count)}"

    def _overflow(self, dir_fd: int, name: str) -> None:
        """A directory too deep to recurse into: move it up into the trash and remove it from there."""
        target = self._new_name("deep")
        try:
            os.rename(name, target, src_dir_fd=dir_fd)
        except OSError as exc:
            logger.warning("cannot move a deeply nested directory to the trash: {}", exc)
            return
        self._todo.put(target)

    def _run(self) -> None:
        while (path := self._todo.get()) is not None:
            try:
                if not remove_tree(path, self._overflow):
                    logger.warning("could not remove all of {}", path)
            except Exception as exc:  # noqa: BLE001 - the janitor must outlive any one bad tree
                logger.warning("removing {} failed: {}", path, exc)
