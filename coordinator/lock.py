"""One coordinator per state directory: an `flock` on `run/coordinator.lock`, holding our pid.

The kernel drops an flock when its holder dies, so a lock left by a killed coordinator is simply taken over;
no stale-pid guessing is needed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StateDirBusy(Exception):
    """Another live coordinator holds the state directory."""


class StateLock:
    """The coordinator's claim on its state directory."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "coordinator.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateDirBusy naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateDirBusy(
                f"another coordinator (pid {holder}) is using {self.path.parent.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock up."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder_pid(run_dir: Path) -> int | None:
    """The pid of the live coordinator on this state dir, or None when nobody holds the lock."""
    path = run_dir / "coordinator.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
