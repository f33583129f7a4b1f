"""Loguru set-up for a worker: stderr, one line per record (or JSON), tagged with the worker's name.

A sandboxed worker keeps its own copy of stderr for the log (a pipe the coordinator relays,
`coordinator/worker_logs.py`) and points descriptors 1 and 2 at /dev/null:
whatever a skill prints (a handler flooding stdout with 100 MB, a library chatting on stderr) is thrown
away instead of filling the coordinator's terminal or log. A crash (segfault) still leaves its Python
traceback in the log through faulthandler.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from typing import TextIO

from loguru import logger


def setup_logging(level: str, *, json: bool, name: str, quiet_stdio: bool = False) -> None:
    """Replace loguru's default sink with ours; with `quiet_stdio`, silence fds 1 and 2 for everyone else."""
    logger.remove()
    logger.configure(extra={"proc": name})
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{extra[proc]}] {message}"
    sink: TextIO = sys.stderr
    if quiet_stdio:
        sink = _private_stderr()
    logger.add(sink, level=level.upper(), serialize=json, format=fmt, backtrace=False, diagnose=False)


def _private_stderr() -> TextIO:
    # Not inherited by anything we start. Under a coordinator this is a pipe it relays, whose write end it
    # made non-blocking: a relay that falls behind costs us log lines, never a blocked heartbeat.
    log = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)
    faulthandler.enable(file=log)
    return log
