"""Start-up recovery: make the queue agree with what a dead coordinator left on disk.

1. Temp files of records that were being written are removed.
2. Record files the index does not know were written just before a crash, after the record but before the
   terminal state was committed: the job is moved to the state the record names (never a second record).
3. Jobs still `running` were held by workers that died with the coordinator: each is charged one death
   (`kills + 1`, ARCHITECTURE section 4) and requeued, or quarantined once it reaches the limit.
The reconciliation scan (every file in the buckets without a job for its current version) is the watcher's
first full scan: the queue's version keys make it enqueue exactly the files that were missed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from loguru import logger

from coordinator.outcomes import Outcomes
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter, WrittenRecord, job_id_of
from coordinator.states import TERMINAL_JOB_STATES, JobState


@dataclass
class RecoveryReport:
    """What recovery did, for the log and `ob-ctl status`."""

    temp_removed: int = 0
    adopted: int = 0
    requeued: int = 0
    quarantined: int = 0
    orphans: int = 0

    def __bool__(self) -> bool:
        return any((self.temp_removed, self.adopted, self.requeued, self.quarantined, self.orphans))


def recover(queue: JobQueue, records: RecordWriter, outcomes: Outcomes) -> RecoveryReport:
    """Run the recovery steps and commit their result."""
    report = RecoveryReport()
    indexed = queue.indexed_record_names()
    with os.scandir(records.directory) as entries:
        names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            (records.directory / name).unlink(missing_ok=True)
            report.temp_removed += 1
            continue
        job_id = job_id_of(name)
        if job_id is None or name in indexed:
            continue
        job = queue.get(job_id)
        if job is None:
            report.orphans += 1
            logger.warning("recovery: record {} names job {}, which the queue does not know", name, job_id)
            continue
        record, state = WrittenRecord.from_file(records.directory / name)
        if job.state in TERMINAL_JOB_STATES:
            queue.index_record(job, state, record)
        else:
            queue.finish(job, state, record=record)
            report.adopted += 1
    for job in queue.running():
        # Its worker died with the coordinator: the same rule as any worker death (retry, or quarantine).
        reason = f"the coordinator died while worker {job.worker} held it"
        outcomes.worker_died(job, "WorkerCrash", reason, "coordinator-died")
        if job.state is JobState.QUARANTINED:
            report.quarantined += 1
        else:
            report.requeued += 1
    queue.flush()
    if report:
        logger.warning("recovery after an unclean stop: {}", report)
    return report
