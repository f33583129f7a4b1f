"""`ob-ctl errors resolve` on the coordinator's side: by job id (all of a job's ERROR records) or by record
name (that one), committed when it answers, refused whole when an ID names nothing or only a SUCCESS record;
and `errors --unresolved` reading it back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator import queries
from coordinator.commands import errors_resolve
from coordinator.commands.common import CommandError
from coordinator.jobs import Job
from coordinator.queue import JobQueue, connect
from coordinator.records import WrittenRecord
from coordinator.states import JobState

OK = "SUCCESS-2026-01-01-000000-000001.json"
FIRST = "ERROR-2026-01-01-000000-000002.json"
SECOND = "ERROR-2026-01-01-000001-000002.json"
OTHER = "ERROR-2026-01-01-000000-000003.json"


def end(q: JobQueue, job: Job, name: str, at: float) -> None:
    q.mark_running(job, "0.1", lease_s=10)
    kind, state = ("SUCCESS", JobState.DONE) if name.startswith("S") else ("ERROR", JobState.FAILED)
    q.finish(job, state, record=WrittenRecord(name, kind, at, "FileAccess", "WARNING", "m", "watcher"))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Any]:
    """Job 1 done; job 2 failed twice (retried in between); job 3 failed."""
    q = JobQueue(tmp_path / "queue.db", clock=lambda: 5000.0)
    done, twice, once = (
        q.add(("b", n, 1, 1, 1), path=f"/b/{n}", relpath=n, output_path=f"/n/{n}") for n in "abc"
    )
    assert done and twice and once
    end(q, done, OK, 100)
    end(q, twice, FIRST, 200)
    q.flush()
    q.reopen(twice, "retried")
    end(q, twice, SECOND, 300)
    end(q, once, OTHER, 400)
    yield SimpleNamespace(jobs=q)  # (not flushed: the handler commits before it looks)
    q.close()


def resolved(tmp_path: Path) -> dict[str, Any]:
    conn = connect(tmp_path / "queue.db", readonly=True)
    rows = {r["name"]: (r["resolved"], r["resolved_at"]) for r in queries.errors(conn)}
    conn.close()
    return rows


def test_a_job_id_resolves_all_its_error_records_and_a_name_one(service: Any, tmp_path: Path) -> None:
    assert errors_resolve.handle(service, {"refs": [2]}) == {"resolved": [FIRST, SECOND], "already": []}
    assert resolved(tmp_path) == {FIRST: (True, 5000.0), SECOND: (True, 5000.0), OTHER: (False, None)}
    # By name, `.json` optional; one already resolved is reported, and keeps its first time.
    result = errors_resolve.handle(service, {"refs": [OTHER.removesuffix(".json"), FIRST]})
    assert result == {"resolved": [OTHER], "already": [FIRST]}
    assert errors_resolve.render(result) == f"resolved 1 ERROR record: {OTHER}\nalready resolved: {FIRST}"
    conn = connect(tmp_path / "queue.db", readonly=True)
    assert queries.errors(conn, unresolved=True) == []
    assert len(queries.errors(conn)) == 3
    conn.close()


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        ([9], "no record of job 9"),
        (["ERROR-2026-01-01-000000-000009.json"], "no record ERROR-2026-01-01-000000-000009.json"),
        ([1], "job 1 has only a SUCCESS record; only ERROR records can be resolved"),
        ([OK], f"{OK} is a SUCCESS record; only ERROR records can be resolved"),
        (["../etc/passwd"], "not a job id or record name"),
        ([True], "not a job id or record name"),
        ([], "one or more job ids or record names"),
        ("2", "one or more job ids or record names"),
    ],
)
def test_a_bad_id_refuses_the_whole_request(service: Any, tmp_path: Path, refs: Any, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        errors_resolve.handle(service, {"refs": [3, *refs] if isinstance(refs, list) and refs else refs})
    assert not any(flag for flag, _ in resolved(tmp_path).values())  # job 3 was not resolved either


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("42", 42),
        (FIRST, FIRST),
        (FIRST[:-5], FIRST),
        ("SUCCESS-2026-01-01-000000-000001-2", OK[:-5] + "-2.json"),
    ],
)
def test_record_refs(text: str, ref: int | str) -> None:
    assert queries.record_ref(text) == ref


@pytest.mark.parametrize("text", ["0", "-1", "x", "ERROR-2026.json", "", "ERROR-2026-01-01-000000-1.txt"])
def test_bad_record_refs(text: str) -> None:
    with pytest.raises(ValueError, match="not a job id or record name"):
        queries.record_ref(text)
