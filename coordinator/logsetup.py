"""Loguru set-up for the coordinator: human lines on stderr, or one JSON object per line (`log_json`); in
daemon mode, a rotated file (`<state-dir>/logs/coordinator.log`) instead of stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from loguru import logger

#: The daemon's log file is rotated at this size, and this many rotated files are kept.
ROTATION, RETENTION = "50 MB", 5


def setup_logging(level: str, *, json: bool, file: Path | None = None) -> None:
    """Replace loguru's default sink with ours and keep third-party stdlib loggers quiet but visible."""
    logger.remove()
    logger.configure(extra={"proc": "coordinator"})
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[proc]}] {message}"
    if file is None:
        logger.add(
            sys.stderr, level=level.upper(), serialize=json, format=fmt, backtrace=False, diagnose=False
        )
    else:
        threshold = logger.level(level.upper()).no

        def wanted(record: Any) -> bool:
            # Workers' lines (WorkerLines) were filtered by the workers' own level already.
            return bool(record["extra"].get("worker_line")) or record["level"].no >= threshold

        logger.add(
            file,
            level=0,
            filter=wanted,
            serialize=json,
            format=fmt,
            backtrace=False,
            diagnose=False,
            rotation=ROTATION,
            retention=RETENTION,
        )
    logging.getLogger("watchdog").setLevel(logging.WARNING)


class WorkerLines:
    """Where `WorkerLogs` relays the workers' lines in daemon mode: loguru's file sink, as they are (no
    second timestamp), so they land between the coordinator's own lines and rotate with them, where the
    foreground sends them to stderr."""

    def write(self, data: bytes) -> int:
        """Log whole lines raw."""
        logger.bind(worker_line=True).opt(raw=True).log("INFO", data.decode(errors="replace"))
        return len(data)

    def flush(self) -> None:
        """(loguru's file sink flushes each message.)"""
