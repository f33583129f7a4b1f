"""A job: one version of one file on its way to exactly one terminal record.

The queue that holds jobs is `coordinator.queue`; this module is just the record type and its key, so that
the supervisor, the records writer and the control commands can share it without importing SQLite code.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.states import JobState

VersionKey = tuple[str, str, int, int, int]  # bucket, relpath, size, mtime_ns, inode


@dataclass(slots=True, eq=False)
class Job:
    """One version of one file. `id` is the queue's row id; on the wire it travels as `str(id)`."""

    id: int
    key: VersionKey
    path: str  # absolute; strings, not Paths: a scan admits 100,000 jobs and pathlib parsing was its top cost
    relpath: str
    output_path: str
    kind: str = "file"
    state: JobState = JobState.QUEUED
    attempts: int = 0  # times handed to a worker
    kills: int = 0  # times a worker (or the coordinator) died while it was running
    worker: str | None = None
    lease_until: float | None = None
    not_before: float | None = None  # a retry waits until then (wall clock)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    last_error: str | None = None
    record: str | None = None
    sha256: str | None = None

    @property
    def bucket(self) -> str:
        return self.key[0]

    @property
    def wire_id(self) -> str:
        """The job id as EXECUTE/RESULT/ERROR carry it."""
        return str(self.id)
