"""The job queue: one job per version of a file, FIFO dispatch, and the idempotency key that makes a second
sighting of the same version a no-op.

This first queue lives in memory; the durable SQLite queue (ARCHITECTURE section 4) replaces it behind the
same methods. Only the coordinator's loop thread touches it.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.states import ALL_JOB_STATES, TERMINAL_JOB_STATES, JobState

VersionKey = tuple[str, str, int, int, int]  # bucket, relpath, size, mtime_ns, inode


@dataclass(slots=True)
class Job:
    """One version of one file on its way to a terminal record."""

    id: str
    key: VersionKey
    bucket: str
    path: Path
    relpath: str
    output_path: Path
    kind: str = "file"
    state: JobState = JobState.QUEUED
    attempts: int = 0  # times handed to a worker
    kills: int = 0  # times a worker died or was killed while holding it
    worker: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    last_error: str | None = None
    record: str | None = None


class JobQueue:
    """Jobs by id, by version key, and the FIFO of queued ones."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[str, Job] = {}
        self._by_key: dict[VersionKey, Job] = {}
        self._queued: deque[Job] = deque()
        self._counts: Counter[JobState] = Counter()

    def add(
        self, key: VersionKey, *, path: Path, relpath: str, output_path: Path, kind: str = "file"
    ) -> Job | None:
        """Enqueue a new version; None when this version is already known (a duplicate sighting)."""
        if key in self._by_key:
            return None
        job = Job(
            id=f"j{next(self._ids)}",
            key=key,
            bucket=key[0],
            path=path,
            relpath=relpath,
            output_path=output_path,
            kind=kind,
        )
        self._by_id[job.id] = job
        self._by_key[key] = job
        self._counts[JobState.QUEUED] += 1
        if kind == "file":
            self._queued.append(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if any."""
        return self._by_id.get(job_id)

    def has_queued(self) -> bool:
        """Whether a job waits for a worker."""
        return bool(self._queued)

    def pop_queued(self) -> Job | None:
        """The oldest queued job, or None."""
        return self._queued.popleft() if self._queued else None

    def _move(self, job: Job, state: JobState) -> None:
        if job.state in TERMINAL_JOB_STATES:
            raise RuntimeError(
                f"job {job.id} is already {job.state}; a second terminal state would double it"
            )
        self._counts[job.state] -= 1
        self._counts[state] += 1
        job.state = state

    def mark_running(self, job: Job, worker: str) -> None:
        """A worker took the job."""
        self._move(job, JobState.RUNNING)
        job.attempts += 1
        job.worker = worker
        job.started_at = time.time()

    def requeue(self, job: Job, error: str, *, front: bool = True) -> None:
        """Back to the queue after its worker died; `front` so a retry is not stuck behind a burst."""
        self._move(job, JobState.QUEUED)
        job.last_error = error
        job.worker = None
        (self._queued.appendleft if front else self._queued.append)(job)

    def finish(self, job: Job, state: JobState, *, record: str | None, error: str | None = None) -> None:
        """Move a job to its one terminal state."""
        if state not in TERMINAL_JOB_STATES:
            raise ValueError(f"{state} is not terminal")
        self._move(job, state)
        job.finished_at = time.time()
        job.record = record
        if error is not None:
            job.last_error = error

    def counts(self) -> dict[str, int]:
        """Jobs by state, every state present."""
        return {state.value: self._counts[state] for state in ALL_JOB_STATES}

    def __len__(self) -> int:
        return len(self._by_id)
