"""`ob-ctl retry JOB_ID | --failed | --quarantined` (wire name `retry`): queue finished jobs again.

Only failed and quarantined jobs: a done job has its note and its SUCCESS record, and a queued or running
one is still on its way. The retried jobs' earlier records stay on disk, marked superseded in the index; the
next attempt writes a deliberate second record.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands import common
from coordinator.commands.common import CommandError
from coordinator.commands.release import find_job, reopen
from coordinator.states import JobState

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "queue failed or quarantined jobs again: one by id, or all --failed, or all --quarantined"

_RETRYABLE = (JobState.FAILED, JobState.QUARANTINED)
_REASON = "retried by an operator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Exactly one of JOB_ID, --failed, --quarantined."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", nargs="?", type=common.job_id, metavar="JOB_ID", help="one job")
    which.add_argument("--failed", action="store_true", help="every failed job")
    which.add_argument("--quarantined", action="store_true", help="every quarantined job")


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Reopen the jobs asked for; a bulk retry skips (and names) the jobs whose input cannot be restored."""
    job_id, failed, quarantined = args.get("job_id"), bool(args.get("failed")), bool(args.get("quarantined"))
    if (job_id is not None) + failed + quarantined != 1:
        raise CommandError("retry takes exactly one of JOB_ID, --failed, --quarantined")
    if job_id is not None:
        job = find_job(service, job_id)
        if job.state not in _RETRYABLE:
            raise CommandError(f"job {job.id} is {job.state}; only failed or quarantined jobs can be retried")
        reopen(service, job, _REASON)
        return {"retried": [job.id], "skipped": []}
    state = JobState.FAILED if failed else JobState.QUARANTINED
    retried: list[int] = []
    skipped: list[dict[str, Any]] = []
    for found in service.jobs.ids_in_state(state):  # it commits first, so the ids are current
        each = service.jobs.get(found)
        if each is None:
            continue
        try:
            reopen(service, each, _REASON)
        except CommandError as exc:
            skipped.append({"id": each.id, "reason": str(exc)})
        else:
            retried.append(each.id)
    return {"retried": retried, "skipped": skipped}


def render(result: dict[str, Any]) -> str:
    """'retried 3 jobs: 4, 9, 12', plus a line per job that was skipped."""
    ids = result["retried"]
    if ids:
        lines = [f"retried {len(ids)} job{'' if len(ids) == 1 else 's'}: {', '.join(map(str, ids))}"]
    else:
        lines = ["nothing to retry"]
    lines += [f"skipped job {s['id']}: {s['reason']}" for s in result.get("skipped", [])]
    return "\n".join(lines)
