"""The durable job queue: SQLite in WAL mode, owned by the coordinator's loop alone.

Jobs in flight live in memory as `Job` objects; every change marks the job dirty and `flush()` writes all
dirty jobs, new jobs and new record-index rows in one transaction (group commit). New jobs are committed
before anything is dispatched or recorded (`has_new`), so a job a worker holds always has a committed row;
all other changes are committed at most `COMMIT_INTERVAL_S` later (`flush_if_due`), however many files moved
meanwhile. Delaying those is safe because of the order of writes below: a crash loses only work that is
then redone, never a record.

Crash safety comes from the order of writes, not from committing often:
- a record file is written before its job's terminal state is committed; `coordinator.recovery` adopts
  record files that the index does not know yet, so a crash in between never leads to a second record;
- a job whose `running` state was never committed is simply `queued` after a crash, and runs again (the
  note is rewritten in place; records are written only by the coordinator, so there was none).

Terminal jobs leave memory after the flush that commits them; their version keys stay, so a second sighting
of a finished version is still a no-op.

A removed bucket's queued jobs are held out of the FIFO ("parked", `coordinator.parking`): `_enqueue` sends
a parked bucket's jobs to its own list, so `pop_queued` never has to look.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from coordinator.jobs import Job, VersionKey
from coordinator.parking import Parking
from coordinator.records import INDEX_COLUMNS, WrittenRecord
from coordinator.schema import migrate
from coordinator.states import ALL_JOB_STATES, TERMINAL_JOB_STATES, JobState
from protocol.messages import text_or_fs_bytes

#: Longest a change waits for its commit. Per-iteration commits cost one transaction per finished file
#: under load (the loop wakes for nearly every RESULT); a short interval batches them.
COMMIT_INTERVAL_S = 0.02

_COLUMNS = (
    "id, bucket, relpath, size, mtime_ns, inode, path, output_path, kind, sha256, state, attempts, kills, "
    "worker, lease_until, not_before, created_at, started_at, finished_at, last_error, record"
)
_INSERT_NEW = (
    "INSERT INTO jobs (id, bucket, relpath, size, mtime_ns, inode, path, output_path, kind, state, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_QUEUED = JobState.QUEUED.value
_INSERT_RECORD = "INSERT OR IGNORE INTO records ({}) VALUES ({})".format(
    ", ".join(INDEX_COLUMNS), ", ".join("?" * len(INDEX_COLUMNS))
)
_UPDATE = (
    "UPDATE jobs SET sha256=?, state=?, attempts=?, kills=?, worker=?, lease_until=?, not_before=?, "
    "started_at=?, finished_at=?, last_error=?, record=?, path=? WHERE id=?"
)


def db_text(value: Any) -> Any:
    """A value read back: file-system bytes (stored by `text_or_fs_bytes`) become the str they came from."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _db(text: str | None) -> str | bytes | None:
    """A str as SQLite's TEXT can hold it. A file name need not be UTF-8 (Linux names are bytes): Python
    gives such a name as a str with lone surrogates ("latin-\\udce9t\\udce9.txt"), which TEXT cannot hold, so
    it is stored as a BLOB of its bytes, which compares equal to itself and reads back exactly (`db_text`).
    Converted here, in the row builders of `flush`, rather than by a sqlite3 adapter for str: registering
    one makes every bound value go through Python and cost 2.5 µs more per inserted job (measured)."""
    return text if text is None or text.isascii() else text_or_fs_bytes(text)


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas we rely on; `readonly` for `ob-ctl` reading beside a live coordinator."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=5)
    else:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives any process crash (kill -9); only a power cut can lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    return conn


def job_from_row(row: sqlite3.Row) -> Job:
    """Rebuild a Job from its row."""
    relpath = db_text(row["relpath"])
    return Job(
        id=row["id"],
        key=(row["bucket"], relpath, row["size"], row["mtime_ns"], row["inode"]),
        path=db_text(row["path"]),
        relpath=relpath,
        output_path=db_text(row["output_path"]),
        kind=row["kind"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        kills=row["kills"],
        worker=row["worker"],
        lease_until=row["lease_until"],
        not_before=row["not_before"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=db_text(row["last_error"]),
        record=db_text(row["record"]),
        sha256=row["sha256"],
    )


class JobQueue(Parking):
    """Jobs by id and by version key, the FIFO of queued ones, the retries waiting for their time, and the
    held-back jobs of parked buckets."""

    def __init__(self, path: Path | str = ":memory:", *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.db = connect(path)
        self.schema_was = migrate(self.db)
        self._live: dict[int, Job] = {}
        self._keys: dict[VersionKey, int] = {}
        self._queued: deque[Job] = deque()
        self._not_files: list[Job] = []  # symlinks, FIFOs, ...: recorded by the coordinator, never dispatched
        self._delayed: list[tuple[float, int, Job]] = []
        self._parked: dict[str, deque[Job]] = {}  # bucket -> its queued jobs, held back from the FIFO
        self._tiebreak = itertools.count()
        self._counts: Counter[str] = Counter()
        self._new: list[Job] = []
        self._dirty: dict[int, Job] = {}
        self._new_records: list[tuple[Any, ...]] = []
        self._superseded: list[str] = []  # record names
        self._resolved: list[tuple[float, str]] = []  # (when, record name): an operator resolved the error
        self.commits = 0
        self._last_flush = time.monotonic()
        self._load()

    # -- start-up ----------------------------------------------------------------------------------------

    def _load(self) -> None:
        cur = self.db.execute("SELECT bucket, relpath, size, mtime_ns, inode, id, state FROM jobs")
        for bucket, relpath, size, mtime_ns, inode, job_id, state in cur:
            self._keys[(bucket, db_text(relpath), size, mtime_ns, inode)] = job_id
            self._counts[state] += 1
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
        )
        for row in rows:
            job = job_from_row(row)
            self._live[job.id] = job
            if job.state is JobState.QUEUED:
                self._enqueue(job)
        (max_id,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()
        self._ids = itertools.count(max_id + 1)

    def running(self) -> list[Job]:
        """Jobs whose committed state is `running` (at start-up: the previous coordinator's, now orphaned)."""
        return [j for j in self._live.values() if j.state is JobState.RUNNING]

    # -- adding and looking up ---------------------------------------------------------------------------

    def add(
        self, key: VersionKey, *, path: str | Path, relpath: str, output_path: str | Path, kind: str = "file"
    ) -> Job | None:
        """Enqueue a new version; None when this version is already known (a duplicate sighting)."""
        if key in self._keys:
            return None
        job = Job(
            id=next(self._ids),
            key=key,
            path=str(path),
            relpath=relpath,
            output_path=str(output_path),
            kind=kind,
            created_at=self.clock(),
        )
        self._keys[key] = job.id
        self._live[job.id] = job
        self._counts[JobState.QUEUED] += 1
        self._new.append(job)
        self._enqueue(job)
        return job

    def get(self, job_id: int) -> Job | None:
        """The job with this id, live or from the database."""
        job = self._live.get(job_id)
        if job is not None:
            return job
        row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row is not None else None

    def knows(self, key: VersionKey) -> bool:
        """Whether this version of a file already has a job."""
        return key in self._keys

    # -- the FIFO ----------------------------------------------------------------------------------------

    def _enqueue(self, job: Job, *, front: bool = False) -> None:
        if job.kind != "file":
            self._not_files.append(job)  # recorded without a worker, so a parked bucket's too
        elif job.not_before is not None and job.not_before > self.clock():
            heapq.heappush(self._delayed, (job.not_before, next(self._tiebreak), job))
        else:
            # (One dict lookup per job only while some bucket is parked: `add` is on the scan's hot path.)
            line = self._parked.get(job.key[0], self._queued) if self._parked else self._queued
            if front:
                line.appendleft(job)
            else:
                line.append(job)

    def _promote_due(self) -> None:
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, job = heapq.heappop(self._delayed)
            if job.state is JobState.QUEUED:
                self._parked.get(job.key[0], self._queued).appendleft(job)

    def take_not_files(self) -> list[Job]:
        """Queued entries that are not regular files; the coordinator records them without a worker."""
        jobs, self._not_files = self._not_files, []
        return [j for j in jobs if j.state is JobState.QUEUED]

    def has_queued(self) -> bool:
        """Whether a job is ready for a worker now."""
        self._promote_due()
        return bool(self._queued)

    def pop_queued(self) -> Job | None:
        """The oldest job ready now, or None."""
        self._promote_due()
        now = self.clock()
        while self._queued:
            job = self._queued.popleft()
            # Skip stale entries: a job that moved on, or one waiting for its retry time (it is in the heap).
            if job.state is JobState.QUEUED and (job.not_before is None or job.not_before <= now):
                return job
        return None

    def oldest_waiting_since(self) -> float | None:
        """When the job at the head of the FIFO (the one waiting longest for a worker) was added (wall
        clock); None when none waits. Looks at a few entries at most: the head may hold stale ones."""
        for job in itertools.islice(self._queued, 64):
            if job.state is JobState.QUEUED:
                return job.created_at
        return None

    def next_retry_at(self) -> float | None:
        """Wall-clock time of the earliest delayed retry."""
        return self._delayed[0][0] if self._delayed else None

    # -- transitions -------------------------------------------------------------------------------------

    def _move(self, job: Job, state: JobState) -> None:
        if job.state in TERMINAL_JOB_STATES:
            raise RuntimeError(
                f"job {job.id} is already {job.state}; a second terminal state would double it"
            )
        self._counts[job.state] -= 1
        self._counts[state] += 1
        job.state = state
        self._dirty[job.id] = job

    def mark_running(self, job: Job, worker: str, *, lease_s: float) -> None:
        """A worker took the job; the lease says when the coordinator stops waiting for it."""
        self._move(job, JobState.RUNNING)
        now = self.clock()
        job.attempts += 1
        job.worker = worker
        job.started_at = now
        job.lease_until = now + lease_s
        job.not_before = None

    def undo_running(self, job: Job, error: str) -> None:
        """The job never reached the worker: back to the front, and not counted as an attempt."""
        job.attempts -= 1
        self.requeue(job, error)

    def requeue(self, job: Job, error: str, *, front: bool = True, delay: float | None = None) -> None:
        """Back to the queue; `front` so a retry is not stuck behind a burst, `delay` to wait first."""
        self._move(job, JobState.QUEUED)
        job.last_error = error
        job.worker = None
        job.lease_until = None
        job.not_before = self.clock() + delay if delay else None
        self._enqueue(job, front=front)

    def finish(self, job: Job, state: JobState, *, record: WrittenRecord, error: str | None = None) -> None:
        """Move a job to its one terminal state, naming the record that says so."""
        if state not in TERMINAL_JOB_STATES:
            raise ValueError(f"{state} is not terminal")
        self._move(job, state)
        job.finished_at = self.clock()
        job.record = record.name
        job.lease_until = None
        if error is not None:
            job.last_error = error
        self._new_records.append(record.index_row(job, state))

    def index_record(self, job: Job, state: JobState, record: WrittenRecord) -> None:
        """Index a record of an already-terminal job (recovery found it on disk)."""
        self._new_records.append(record.index_row(job, state))

    def reopen(self, job: Job, reason: str) -> None:
        """An operator asked for another try of a finished job: its records are marked superseded and it is
        queued again with a clean slate of deaths. Its next record is a deliberate second one."""
        if job.state not in TERMINAL_JOB_STATES:
            raise ValueError(f"job {job.id} is {job.state}, not finished")
        self._counts[job.state] -= 1
        self._counts[JobState.QUEUED] += 1
        job.state = JobState.QUEUED
        job.kills = job.attempts = 0
        job.worker = job.started_at = job.lease_until = None
        job.record = None
        job.finished_at = None
        job.last_error = reason
        job.not_before = None
        self._live[job.id] = job
        self._dirty[job.id] = job
        # The records that exist now, committed or pending; not the ones the next attempt writes.
        committed = self.db.execute("SELECT name FROM records WHERE job_id = ?", (job.id,))
        self._superseded += [name for (name,) in committed]
        self._superseded += [row[0] for row in self._new_records if row[1] == job.id]
        self._enqueue(job, front=True)

    def resolve(self, names: list[str], at: float) -> None:
        """Mark ERROR records resolved (`ob-ctl errors resolve`); committed with the next flush. A record
        already resolved keeps its first time."""
        self._resolved += [(at, name) for name in names]

    def set_path(self, job: Job, path: str | Path) -> None:
        """The input moved (processed/ or quarantine/): remember where it is now."""
        job.path = str(path)
        self._dirty[job.id] = job

    # -- committing --------------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether anything waits to be committed."""
        return bool(self._new or self._dirty or self._new_records or self._superseded or self._resolved)

    def has_new(self) -> bool:
        """Whether jobs were added since the last commit (they must be committed before they go out)."""
        return bool(self._new)

    def flush_due(self) -> float | None:
        """Monotonic time by which pending changes must be committed, or None when nothing is pending."""
        return self._last_flush + COMMIT_INTERVAL_S if self.pending() else None

    def flush_if_due(self) -> None:
        """Commit if the oldest pending change has waited COMMIT_INTERVAL_S."""
        due = self.flush_due()
        if due is not None and time.monotonic() >= due:
            self.flush()

    def flush(self) -> None:
        """Commit every change since the last flush in one transaction."""
        self._last_flush = time.monotonic()
        if not self.pending():
            return
        new, dirty, records, superseded = self._new, self._dirty, self._new_records, self._superseded
        resolved = self._resolved
        self._new, self._dirty, self._new_records, self._superseded, self._resolved = [], {}, [], [], []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            # A new job is inserted with the columns `add` sets (the rest are the table's defaults, which is
            # what a new job holds); one that changed since is updated by the next statement. Binding 11
            # values instead of 21 is a third of the insert's cost, on the start-up scan's hot path.
            db.executemany(_INSERT_NEW, [_new_row(j) for j in new])
            db.executemany(_UPDATE, [_update(j) for j in dirty.values()])
            rows = [(*r[:7], _db(r[7]), r[8], _db(r[9]), *r[10:]) for r in records]  # relpath, message: names
            db.executemany(_INSERT_RECORD, rows)
            # After the inserts: a record written and superseded within one iteration is marked too.
            names = [(name,) for name in superseded]
            db.executemany("UPDATE records SET superseded = 1 WHERE name = ?", names)
            db.executemany(
                "UPDATE records SET resolved = 1, resolved_at = ? WHERE name = ? AND resolved = 0", resolved
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._new, self._new_records, self._superseded, self._resolved = (
                new + self._new,
                records + self._new_records,
                superseded + self._superseded,
                resolved + self._resolved,
            )
            self._dirty = dirty | self._dirty
            raise
        self.commits += 1
        for job in itertools.chain(new, dirty.values()):
            if job.state in TERMINAL_JOB_STATES:
                self._live.pop(job.id, None)

    # -- reading -----------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Jobs by state, every state present."""
        return {state.value: self._counts[state] for state in ALL_JOB_STATES}

    def indexed_record_names(self) -> set[str]:
        """Every record name the index knows (committed)."""
        return {name for (name,) in self.db.execute("SELECT name FROM records")}

    def iter_live(self) -> Iterator[Job]:
        """Jobs not yet terminal (or terminal but not yet flushed)."""
        return iter(list(self._live.values()))

    def ids_in_state(self, state: JobState, limit: int = 100_000) -> list[int]:
        """Committed ids of jobs in a state (for bulk retry)."""
        self.flush()
        cur = self.db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY id LIMIT ?", (state.value, limit))
        return [i for (i,) in cur]

    def close(self) -> None:
        """Commit what is pending and close the database."""
        try:
            self.flush()
        finally:
            self.db.close()

    def __len__(self) -> int:
        return len(self._keys)


def _new_row(job: Job) -> tuple[Any, ...]:
    bucket, relpath, size, mtime_ns, inode = job.key
    return (
        job.id, bucket, _db(relpath), size, mtime_ns, inode, _db(job.path), _db(job.output_path), job.kind,
        _QUEUED, job.created_at,
    )  # fmt: skip


def _update(job: Job) -> tuple[Any, ...]:
    # `job.state` binds as its text (a StrEnum is a str); `.value` would cost a descriptor call per row.
    return (
        job.sha256, job.state, job.attempts, job.kills, job.worker, job.lease_until, job.not_before,
        job.started_at, job.finished_at, _db(job.last_error), job.record, _db(job.path), job.id,
    )  # fmt: skip
