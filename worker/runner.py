"""Runs one job at a time on a helper thread, so the worker's loop keeps heartbeating while a file is
processed.

The loop hands a job in with `submit`, and is woken through a pipe when the outcome is ready; `take` then
returns it. A thread cannot be cancelled, so a job past its deadline is abandoned: the loop answers ERROR
and the whole worker exits (the coordinator starts a fresh one).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.messages import Error, Execute, Result
from worker.pipeline.limits import limit_error


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one job: a RESULT or an ERROR body."""

    job_id: str
    body: Result | Error


JobFunction = Callable[[Execute], Result]


class JobRunner:
    """One daemon thread, one job at a time."""

    def __init__(self, work: JobFunction, wake_fd: int) -> None:
        self._work = work
        self._wake_fd = wake_fd
        self._inbox: queue.SimpleQueue[Execute] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="job-runner", daemon=True)
        self._thread.start()

    def submit(self, job: Execute) -> None:
        """Start a job (the caller makes sure only one is in flight)."""
        self._inbox.put(job)

    def take(self) -> Outcome | None:
        """A finished job's outcome, if one is waiting."""
        try:
            return self._outbox.get_nowait()
        except queue.Empty:
            return None

    def _run(self) -> None:
        while True:
            job = self._inbox.get()
            started = time.monotonic()
            body: Result | Error
            try:
                body = self._work(job)
            except Exception as exc:
                body = _error_from(job, exc, time.monotonic() - started)
            self._outbox.put(Outcome(job.job_id, body))
            try:
                os.write(self._wake_fd, b"j")
            except OSError:  # pipe full means the loop is already being woken
                pass


def _error_from(job: Execute, exc: Exception, duration: float) -> Error:
    if not hasattr(exc, "category"):
        exc = limit_error(exc) or exc  # MemoryError, EFBIG...: a limit, not a bug in our pipeline
    fields: dict[str, Any] = {
        "category": getattr(exc, "category", "System"),
        "retryable": bool(getattr(exc, "retryable", False)),
        "code": getattr(exc, "code", None),
    }
    return Error(
        job_id=job.job_id,
        name=type(exc).__name__,
        message=str(exc)[:16000] or type(exc).__name__,
        stack=traceback.format_exc()[-16000:],
        duration_s=duration,
        **fields,
    )
