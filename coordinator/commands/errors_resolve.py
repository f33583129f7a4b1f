"""`ob-ctl errors resolve ID [ID ...]` (wire name `errors-resolve`): mark ERROR records resolved.

An ID is what `ob-ctl errors` shows: a job id resolves every ERROR record of that job (a retried job has
one per attempt that failed, the earlier ones superseded), a record file's name (`ERROR-...json`, the
`name` of `ob-ctl errors --json`; `.json` may be left off) resolves that one record. The whole request is
refused in one line if any ID names nothing, or names only SUCCESS records; a record resolved before keeps
its first time and is reported as such.

The flag lives in the records index (`resolved`, `resolved_at`), not in the record file: a record is never
rewritten. It goes through the coordinator because the coordinator is the queue's only writer.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator import queries
from coordinator.commands import common
from coordinator.commands.common import CommandError

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "mark ERROR records resolved: by job id (all its ERROR records) or by record name (that one)"
WIRE = "errors-resolve"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One or more IDs."""
    parser.add_argument(
        "refs",
        nargs="+",
        type=common.record_ref,
        metavar="ID",
        help="a job id (all its ERROR records) or an ERROR record's file name (see ob-ctl errors)",
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Resolve every ERROR record the IDs name, or none of them."""
    refs = args.get("refs")
    if not isinstance(refs, list) or not refs:
        raise CommandError("resolve takes one or more job ids or record names")
    queue = service.jobs
    # Commit first: a record written in this loop iteration must be in the index to be found.
    queue.flush()
    names: list[str] = []
    already: list[str] = []
    for ref in refs:
        for row in _error_records(queue.db, ref):
            if row["name"] in names or row["name"] in already:
                continue
            (already if row["resolved"] else names).append(row["name"])
    queue.resolve(names, queue.clock())
    queue.flush()  # the reply means it is committed: `ob-ctl errors` right after shows it
    return {"resolved": names, "already": already}


def _error_records(conn: Any, ref: object) -> list[dict[str, Any]]:
    """The ERROR records `ref` names, or a CommandError saying why there are none."""
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise CommandError(f"not a job id or record name: {ref!r}")
    if isinstance(ref, str):
        try:
            ref = queries.record_ref(ref)  # the socket may carry anything: the same check as ob-ctl's
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    rows = queries.records_named(conn, ref)
    if not rows:
        raise CommandError(f"no record of job {ref}" if isinstance(ref, int) else f"no record {ref}")
    errors = [row for row in rows if row["kind"] == "ERROR"]
    if not errors:
        what = (
            f"job {ref} has only a SUCCESS record" if isinstance(ref, int) else f"{ref} is a SUCCESS record"
        )
        raise CommandError(f"{what}; only ERROR records can be resolved")
    return errors


def render(result: dict[str, Any]) -> str:
    """'resolved 2 ERROR records: ...', and the ones that already were."""
    names = result["resolved"]
    lines = [f"resolved {len(names)} ERROR record{'' if len(names) == 1 else 's'}: {', '.join(names)}"]
    if not names:
        lines = ["nothing to resolve"]
    if result["already"]:
        lines.append(f"already resolved: {', '.join(result['already'])}")
    return "\n".join(lines)
