"""Loguru set-up for a worker: stderr, one line per record (or JSON), tagged with the worker's name."""

from __future__ import annotations

import sys

from loguru import logger


def setup_logging(level: str, *, json: bool, name: str) -> None:
    """Replace loguru's default sink with ours."""
    logger.remove()
    logger.configure(extra={"proc": name})
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[proc]}] {message}"
    logger.add(sys.stderr, level=level.upper(), serialize=json, format=fmt, backtrace=False, diagnose=False)
