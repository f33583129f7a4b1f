"""`ob-ctl quarantine release JOB_ID` (wire name `release`): queue a quarantined job again.

Also home of what `retry` shares with it: finding the job, and putting an input that quarantine moved away
(`jobs.quarantine_move`) back at `<bucket>/<relpath>` before the job runs again.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from coordinator.commands import common
from coordinator.commands.common import CommandError
from coordinator.inputs import still_this_version
from coordinator.jobs import Job
from coordinator.states import JobState

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "queue a quarantined job again (its input is moved back into its bucket first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job to release."""
    parser.add_argument("job_id", type=common.job_id, metavar="JOB_ID", help="the quarantined job")


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Release one quarantined job."""
    job = find_job(service, args.get("job_id"))
    if job.state is not JobState.QUARANTINED:
        raise CommandError(f"job {job.id} is {job.state}; only quarantined jobs can be released")
    reopen(service, job, "released from quarantine by an operator")
    return {"released": job.id}


def render(result: dict[str, Any]) -> str:
    """One line."""
    return f"released job {result['released']}: queued again"


def find_job(service: Service, job_id: object) -> Job:
    """The job a request names, or a CommandError."""
    if not isinstance(job_id, int) or isinstance(job_id, bool):
        raise CommandError(f"a job id is a positive integer, not {job_id!r}")
    # Commit first: a record written in this loop iteration must be in the index before reopen() marks the
    # job's records superseded, or that record would escape the mark.
    service.jobs.flush()
    job = service.jobs.get(job_id)
    if job is None:
        raise CommandError(f"no job {job_id}")
    return job


def reopen(service: Service, job: Job, reason: str) -> None:
    """Queue a terminal job again, its quarantined input first moved back where it was dropped.

    Only while its input is still the version the job is about: the worker is sent a path, not a version,
    so a job reopened over a newer file would record the new content under the old version's key (and the
    newer version is already a job of its own)."""
    restore_input(service, job)
    if not still_this_version(job):
        raise CommandError(f"job {job.id}: {job.path} is gone or changed since; a new version is a new job")
    service.jobs.reopen(job, reason)
    logger.info("job {} ({}/{}) queued again: {}", job.id, job.bucket, job.relpath, reason)


def restore_input(service: Service, job: Job) -> None:
    """If quarantine moved the input away, move it back to `<bucket root>/<relpath>`.

    A hard link then an unlink, not a rename: the link refuses to replace a file dropped at that name since
    (a newer version, with its own job), and keeps the inode, so the watcher sees the version it already
    knows and adds no second job for it.
    """
    if not Path(job.path).is_relative_to(service.config.quarantine_dir()):
        return
    bucket = next((b for b in service.buckets if b.name == job.bucket), None)
    if bucket is None:
        raise CommandError(
            f"job {job.id}: bucket {job.bucket!r} is gone from the config; input left at {job.path}"
        )
    if not still_this_version(job):
        raise CommandError(f"job {job.id}: its input is no longer at {job.path}")
    target = bucket.path.expanduser().absolute() / job.relpath
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(job.path, target)
    except FileExistsError:
        raise CommandError(f"job {job.id}: cannot move {job.path} back: {target} exists") from None
    except OSError as exc:
        why = "another filesystem; move it by hand (it will be a new job)" if exc.errno == errno.EXDEV else ""
        why = why or exc.strerror or str(exc)
        raise CommandError(f"job {job.id}: cannot move {job.path} back to {target}: {why}") from None
    try:
        os.unlink(job.path)
    except OSError as exc:  # the job is fine either way; the extra name is only clutter
        logger.warning("job {}: moved back to {}, but {} stays: {}", job.id, target, job.path, exc.strerror)
    service.jobs.set_path(job, target)
