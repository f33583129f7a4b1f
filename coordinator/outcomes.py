"""How a job's attempt ends: the one place that writes terminal records, requeues, retries and quarantines.

    success          → SUCCESS record, job done, input kept / moved / deleted
    worker ERROR     → retryable: requeued with backoff, up to `retry_max_attempts` attempts in all (the disk
                       said no: health degraded until it works, retried for as long as it takes)
                       final, or out of attempts: ERROR record whose `recovery` says what was tried
    worker died      → requeued with backoff, or after `quarantine_after` deaths: ERROR record, quarantined
    not a file       → ERROR record (FileAccess) at once, never opened
    cancelled        → ERROR record (Cancelled, severity INFO): an operator removed its bucket with --cancel
    we stopped it    → requeued, not charged

If the record itself cannot be written (disk full, permissions), the job is not finished: it is retried
with backoff and health reports `records`, so nothing is lost and nothing is marked done without its record.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from loguru import logger

from coordinator.config import Config
from coordinator.health import Health
from coordinator.inputs import delete_input, move_input
from coordinator.jobs import Job
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter, WrittenRecord
from coordinator.sidecars import Sidecars
from coordinator.states import JobState
from protocol.bucket_include import Problem
from protocol.messages import Error, Result
from protocol.note_files import job_temp_path


class Outcomes:
    """Turns the end of an attempt into queue transitions and record files."""

    def __init__(
        self,
        config: Config,
        queue: JobQueue,
        records: RecordWriter,
        health: Health,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.records = records
        self.health = health
        self.rng = rng or random.Random()
        self.sidecars = Sidecars()  # `<name>.error` beside a failed file's would-be note
        # Told of every terminal record (the telemetry counts files, successes and failures from it):
        # (job, state, error category or None, the grep rules its note matched, or None).
        self.on_end: Callable[[Job, JobState, str | None, list[str] | None], None] | None = None

    def retry_delay(self, job: Job) -> float:
        """Exponential backoff with jitter over the job's attempts so far: initial x factor^(attempts - 1),
        capped, then drawn from [delay/2, delay] so jobs that failed together do not return together."""
        jobs = self.config.jobs
        exponent = min(64, max(0, job.attempts - 1))  # (a float power past this only overflows)
        delay = min(
            jobs.retry_backoff_max_s, jobs.retry_backoff_initial_s * jobs.retry_backoff_factor**exponent
        )
        return self.rng.uniform(delay / 2, delay) if delay > 0 else 0.0

    def recovery(self, job: Job, *, tried: str, why: str) -> dict[str, Any]:
        """An ERROR record's `recovery` block: what was tried before giving up, and why it ended. Every
        ending here passes one, so all ERROR records carry the same keys whichever way the job ended."""
        jobs = self.config.jobs
        return {
            "attempted": job.attempts > 1,
            "attempts": job.attempts,
            "maxAttempts": jobs.retry_max_attempts,
            "workerDeaths": job.kills,
            "fallback": tried,
            "backoff": {
                "initial_s": jobs.retry_backoff_initial_s,
                "factor": jobs.retry_backoff_factor,
                "max_s": jobs.retry_backoff_max_s,
            },
            "successful": False,
            "reason": why,
        }

    def _terminal(
        self,
        job: Job,
        state: JobState,
        write: Callable[[], WrittenRecord],
        error: str | None,
        grep_rules: list[str] | None = None,
    ) -> bool:
        try:
            record = write()
        except OSError as exc:
            reason = f"records cannot be written in {self.records.directory}: {exc.strerror or exc}"
            self.health.report("records", reason)
            delay = self.retry_delay(job)
            logger.error("{}; job {} retried in {:.1f}s", reason, job.id, delay)
            self.queue.requeue(job, f"System: {reason}", front=False, delay=delay)
            return False
        self.health.clear("records")
        self.queue.finish(job, state, record=record, error=error)
        if self.on_end is not None:
            try:
                self.on_end(job, state, record.category, grep_rules)
            except Exception:  # counting must never cost a job its ending (the move, the next steps)
                logger.exception("counting the end of job {} failed", job.id)
        return True

    def _error_end(self, job: Job, state: JobState, error: str, **record: Any) -> bool:
        """End a job with an ERROR record (see `RecordWriter.error` for the fields)."""
        if not self._terminal(job, state, lambda: self.records.error(job, state=state, **record), error):
            return False
        self.sidecars.failed(self.config, job, state, record)  # (never raises)
        return True

    # -- endings -----------------------------------------------------------------------------------------

    def success(self, job: Job, body: Result) -> None:
        """The worker wrote the note."""
        job.sha256 = body.facts.sha256 if body.facts else None
        self.health.clear("notes")
        if self._terminal(
            job,
            JobState.DONE,
            lambda: self.records.success(job, result=_as_dict(body), duration_s=body.duration_s),
            None,
            [m.rule for m in body.facts.grep_matches] if body.facts and body.facts.grep_matches else None,
        ):
            self.sidecars.succeeded(self.config, job)  # an earlier version's stale `.error`, if any
            self._after_success(job)

    def worker_error(self, job: Job, body: Error) -> None:
        """The worker could not process the file (the worker itself is fine)."""
        summary = f"{body.category}: {body.message}"
        # Our own storage failing (System) is never the file's fault: it is retried for as long as it takes.
        attempts_left = body.category == "System" or job.attempts < self.config.jobs.retry_max_attempts
        if body.retryable and attempts_left:
            delay = self.retry_delay(job)
            if body.category == "System":
                self.health.report("notes", f"notes cannot be written: {body.message}")
            logger.warning("job {} ({}) will be retried in {:.1f}s: {}", job.id, job.relpath, delay, summary)
            self.queue.requeue(job, summary, front=False, delay=delay)
            return
        if body.retryable:
            recovery = self.recovery(
                job, tried="retried with backoff", why=f"gave up after {job.attempts} attempts"
            )
        else:
            recovery = self.recovery(job, tried="none", why=f"{body.category} is not retryable")
        self._error_end(
            job,
            JobState.FAILED,
            summary,
            category=body.category,
            message=body.message,
            name=body.name,
            code=body.code,
            stack=body.stack,
            recovery=recovery,
        )

    def worker_died(self, job: Job, category: str, reason: str, code: str) -> None:
        """The worker holding `job` died or was killed: retry, or quarantine at the limit."""
        job.kills += 1
        limit = self.config.supervisor.quarantine_after
        if job.kills < limit:
            # Backoff for this retry too: a file that crashed its worker should not take down the next
            # one within the same millisecond, and a crash storm should not spin through the queue.
            delay = self.retry_delay(job)
            logger.warning("job {} ({}) retried in {:.2f}s: {}", job.id, job.relpath, delay, reason)
            self.queue.requeue(job, f"{category}: {reason}", front=False, delay=delay)
            return
        message = f"quarantined after {job.kills} worker deaths; last: {reason}"
        logger.error("job {} ({}) {}", job.id, job.relpath, message)
        ended = self._error_end(
            job,
            JobState.QUARANTINED,
            f"{category}: {reason}",
            category=category,
            name="Quarantined",
            message=message,
            code=code,
            component="supervisor",
            recovery=self.recovery(
                job, tried="retried with backoff on a fresh worker", why=f"{job.kills} worker deaths"
            ),
        )
        if ended:
            # A worker killed while writing its note leaves the job's temp note, which only a retry reuses.
            try:
                os.unlink(job_temp_path(str(job.output_path), job.wire_id))
            except OSError:
                pass  # (none, the usual case: the deaths came before the note)
        if ended and self.config.jobs.quarantine_move:
            moved = move_input(job, self.config.quarantine_dir())
            if moved is not None:
                self.queue.set_path(job, moved)

    def interrupted(self, job: Job) -> None:
        """We stopped its worker (shutdown): not the file's fault, so no death is charged."""
        self.queue.requeue(job, "coordinator stopped before the job finished")

    def not_a_file(self, job: Job) -> None:
        """A symlink, FIFO, device or socket: recorded, never opened."""
        message = f"{job.relpath} is a {job.kind}, not a regular file; it was not opened"
        logger.warning("{}", message)
        self._error_end(
            job,
            JobState.FAILED,
            f"FileAccess: {message}",
            category="FileAccess",
            message=message,
            code=job.kind,
            component="watcher",
            operation="admit",
            recovery=self.recovery(job, tried="none", why=f"a {job.kind} is never opened"),
        )

    def cancelled(self, job: Job, why: str) -> None:
        """An operator ended a queued job that never ran to its end (its bucket was removed with
        `--cancel`): failed, with an ERROR record, so the file still has its one terminal record."""
        self._error_end(
            job,
            JobState.FAILED,
            f"Cancelled: {why}",
            category="Cancelled",
            name="Cancelled",
            message=why,
            component="operator",
            operation="cancel",
            recovery=self.recovery(job, tried="none", why="cancelled by an operator"),
        )

    def _after_success(self, job: Job) -> None:
        mode = self.config.jobs.after_success
        if mode == "move":
            moved = move_input(job, self.config.processed_dir())
            if moved is not None:
                self.queue.set_path(job, moved)
        elif mode == "delete":
            delete_input(job)

    def bad_rules(self, job: Job, problems: list[Problem]) -> None:
        """A `.bucket-include` file (this version of it) has lines that cannot be used: one Configuration
        ERROR record naming each line; the file's other rules keep working."""
        if problems:
            lines = [f"line {p.line}: {p.message}: {p.text!r}" if p.line else p.message for p in problems]
            message = f"{len(problems)} bad line(s) in {job.path}; they are skipped: " + "; ".join(lines)
        else:
            message = f"{job.path} has changed since; its current version has no bad lines"
        logger.warning("{}", message)
        self._error_end(
            job,
            JobState.FAILED,
            f"Configuration: {message}",
            category="Configuration",
            name="BadRule",
            message=message[:16000],
            code="EBADRULE",
            component="rules",
            operation="read_rules",
            recovery=self.recovery(job, tried="the rest of its rules", why="the bad lines are skipped"),
        )


def _as_dict(body: Result) -> dict[str, Any]:
    """The RESULT's fields as plain data; `__dict__` of a validated model, cheaper than `model_dump()`."""
    return {"output_path": body.output_path, "facts": dict(body.facts.__dict__) if body.facts else None}
