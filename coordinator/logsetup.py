"""Loguru set-up for the coordinator: human lines on stderr, or one JSON object per line (`log_json`)."""

from __future__ import annotations

import logging
import sys

from loguru import logger


def setup_logging(level: str, *, json: bool) -> None:
    """Replace loguru's default sink with ours and keep third-party stdlib loggers quiet but visible."""
    logger.remove()
    logger.configure(extra={"proc": "coordinator"})
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[proc]}] {message}"
    logger.add(sys.stderr, level=level.upper(), serialize=json, format=fmt, backtrace=False, diagnose=False)
    logging.getLogger("watchdog").setLevel(logging.WARNING)
