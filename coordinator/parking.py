"""Parking: a bucket's queued jobs held back from the FIFO, neither handed out nor lost.

A bucket removed at run time (`ob-ctl bucket remove`, a reload), or missing from the config at start, keeps
its queued jobs, but they must not go out: `park(bucket)` moves them out of the FIFO into a list of their
own, and every job of that bucket queued later (a delayed retry coming due, a requeue after its worker died,
a reopened job) lands there too (`JobQueue._enqueue`), until `unpark(bucket)` puts them back at the end of
the FIFO. A bucket just added is parked too, until every worker's sandbox reaches it
(`coordinator.sandbox_sync`).

Parking is not a job state: the rows stay `queued`, so a restart loses nothing, and on start the service
parks again every bucket the queue knows that its config does not name (`park_all_except`). `pop_queued`,
on the path of every job, pays nothing for it: the FIFO never holds a parked bucket's job.

A mixin of `JobQueue`, kept apart so the queue reads as adding, handing out, finishing and committing.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter, deque
from collections.abc import Iterable

from coordinator.jobs import Job, VersionKey
from coordinator.states import JobState
from protocol.messages import text_or_fs_bytes


class Parking:
    """Holding back whole buckets' queued jobs (see the module docstring)."""

    # What this mixin uses of the JobQueue it is part of.
    db: sqlite3.Connection
    _live: dict[int, Job]
    _keys: dict[VersionKey, int]
    _queued: deque[Job]
    _delayed: list[tuple[float, int, Job]]
    _parked: dict[str, deque[Job]]

    def park(self, bucket: str) -> int:
        """Hold back the bucket's queued jobs (and every one it queues later) until `unpark`; how many are
        held now. A job already running is not touched: if it comes back to the queue, it is held too."""
        line = self._parked.setdefault(bucket, deque())
        keep: deque[Job] = deque()
        for job in self._queued:
            if job.key[0] != bucket:
                keep.append(job)
            elif job.state is JobState.QUEUED:
                line.append(job)
        self._queued = keep
        return self.parked_count(bucket)

    def park_all_except(self, buckets: Iterable[str]) -> dict[str, int]:
        """At start: park every bucket a job names that is not in `buckets` (the config's), so the jobs of a
        bucket removed before a restart stay held; the parked buckets and their queued jobs."""
        wanted = set(buckets)
        names = {job.key[0] for job in self._live.values()}  # (a name with no live job needs no parking)
        return {name: self.park(name) for name in sorted(names - wanted)}

    def unpark(self, bucket: str, *, root: str | None = None, output: str | None = None) -> int:
        """Let the bucket's held jobs go, at the end of the FIFO; how many. With `root` and `output` (the
        bucket's directories now, which may differ from when its jobs were found: it came back elsewhere),
        each job's input and note paths are made relative to them again."""
        if root is not None and output is not None:
            self.relocate(bucket, root, output)  # first: if the database says no, nothing is lost
        line = self._parked.pop(bucket, None)
        jobs = _queued_once(line or ())
        self._queued.extend(jobs)
        return len(jobs)

    def relocate(self, bucket: str, root: str, output: str) -> int:
        """Make the input and note paths of every unfinished job of `bucket` (parked, queued, a delayed
        retry, running) relative to its directories now; how many moved. For a bucket that came back
        elsewhere, or whose root or notes dir changed across a restart."""
        return self.relocate_all({bucket: (root, output)})

    def relocate_all(self, dirs: dict[str, tuple[str, str]]) -> int:
        """`relocate` for several buckets (bucket -> (root, notes dir)) in one pass over the live jobs."""
        moved = []
        for job in self._live.values():
            where = dirs.get(job.key[0])
            if where is None or job.kind == "rules":
                continue  # (a rule file's job has no note, and the global profile is not in the bucket)
            path = os.path.join(where[0], job.relpath)
            note = os.path.join(where[1], f"{job.relpath}.obs.md")
            if (path, note) != (job.path, job.output_path):
                job.path, job.output_path = path, note
                moved.append((text_or_fs_bytes(path), text_or_fs_bytes(note), job.id))
        # Straight to the database, not through the group commit: rare, and `output_path` is not in the
        # per-change UPDATE of every job. A job not committed yet is inserted with the new paths anyway.
        # (Names that are not UTF-8 are stored as their bytes, as the queue stores them.)
        self.db.executemany("UPDATE jobs SET path = ?, output_path = ? WHERE id = ?", moved)
        return len(moved)

    def is_parked(self, bucket: str) -> bool:
        """Whether the bucket's jobs are held back."""
        return bucket in self._parked

    def parked_jobs(self, bucket: str) -> list[Job]:
        """The bucket's queued jobs that are held back, delayed retries included (oldest id first)."""
        return sorted(self._held(bucket), key=lambda j: j.id)

    def parked_count(self, bucket: str) -> int:
        """How many of the bucket's queued jobs are held back."""
        return len(self._held(bucket))

    def parked(self) -> dict[str, int]:
        """The parked buckets that hold back queued jobs, and how many each."""
        counts = {bucket: self.parked_count(bucket) for bucket in self._parked}
        return {bucket: n for bucket, n in counts.items() if n}

    def _held(self, bucket: str) -> list[Job]:
        if bucket not in self._parked:
            return []
        delayed = [job for _, _, job in self._delayed if job.key[0] == bucket]
        return _queued_once([*self._parked[bucket], *delayed])

    def queued_by_bucket(self) -> Counter[str]:
        """Queued jobs (held back or not) per bucket name."""
        return Counter(j.key[0] for j in self._live.values() if j.state is JobState.QUEUED)


def _queued_once(jobs: Iterable[Job]) -> list[Job]:
    """The jobs still queued, each once, in order (a held list may keep a job that moved on, or twice)."""
    seen: set[int] = set()
    out = []
    for job in jobs:
        if job.state is JobState.QUEUED and job.id not in seen:
            seen.add(job.id)
            out.append(job)
    return out
