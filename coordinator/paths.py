"""Where things live under the state dir; cheap to import (the CLIs need it before anything else)."""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.config import Config, ConfigError

#: Longest path a unix socket address may have on Linux (sun_path is 108 bytes with the terminator).
MAX_SOCKET_PATH = 107


def run_dir(state_dir: Path) -> Path:
    """The 0700 directory holding sockets and the lock."""
    return state_dir.expanduser().absolute() / "run"


def socket_paths(state_dir: Path) -> tuple[Path, Path]:
    """(workers.sock, control.sock) for a state dir."""
    run = run_dir(state_dir)
    return run / "workers.sock", run / "control.sock"


def check_socket_paths(config: Config) -> None:
    """Unix socket paths are short; say so before anything starts instead of failing in bind()."""
    for path in socket_paths(config.service.state_dir):
        size = len(os.fsencode(path))
        if size > MAX_SOCKET_PATH:
            raise ConfigError(
                f"service.state_dir: socket path {path} is {size} bytes; "
                f"unix sockets allow {MAX_SOCKET_PATH} (use a shorter state dir)"
            )
