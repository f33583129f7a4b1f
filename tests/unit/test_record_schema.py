"""The record schema: what the writer produces passes, and each kind of mistake is named."""

from __future__ import annotations

import copy
import json
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from coordinator.jobs import Job
from coordinator.record_schema import problems
from coordinator.records import RecordWriter
from coordinator.states import JobState


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A SUCCESS and an ERROR record as the writer writes them, read back."""
    writer = RecordWriter(tmp_path_factory.mktemp("records"))
    job = Job(id=7, key=("b", "a.txt", 3, 111, 7), path="/b/a.txt", relpath="a.txt", output_path="/n/a")
    job.worker, job.attempts = "0.1", 1
    facts = {"size": 3, "sha256": "ab" * 32, "file_type": "text", "skill": "text"}
    ok = writer.success(job, result={"output_path": "/n/a.obs.md", "facts": facts}, duration_s=0.01)
    bad = writer.error(job, state=JobState.FAILED, category="FileContent", message="corrupt")
    writer.close()
    assert writer.invalid == 0
    read = {kind: json.loads((writer.directory / r.name).read_text()) for kind, r in (("S", ok), ("E", bad))}
    return {"SUCCESS": read["S"], "ERROR": read["E"]}


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """The ERROR lines loguru logs during the test."""
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    yield lines
    logger.remove(sink)


@pytest.mark.parametrize("kind", ["SUCCESS", "ERROR"])
def test_what_the_writer_writes_passes(written: dict[str, dict[str, Any]], kind: str) -> None:
    assert problems(kind, written[kind]) == []


@pytest.mark.parametrize(
    ("kind", "change", "problem"),
    [
        ("SUCCESS", lambda r: r.pop("jobId"), "jobId: missing"),
        ("SUCCESS", lambda r: r.update(jobId=True), "jobId: bool True, expected int"),
        ("SUCCESS", lambda r: r["processing"].update(duration="1s"), "processing.duration: str '1s'"),
        ("SUCCESS", lambda r: r.update(state="failed"), "state: 'failed' is not a state SUCCESS records"),
        ("SUCCESS", lambda r: r.update(outputPath=None), None),  # the no-op pipeline: allowed
        ("ERROR", lambda r: r.update(component=None), "component: NoneType None, expected str"),
        ("ERROR", lambda r: r["context"].pop("kills"), "context.kills: missing"),
        ("ERROR", lambda r: r.update(severity="FATAL"), "severity: 'FATAL' is not one of ERROR"),
        ("ERROR", lambda r: r.update(state="done"), "state: 'done' is not a state ERROR records"),
    ],
)
def test_each_mistake_is_named(
    written: dict[str, dict[str, Any]], kind: str, change: Any, problem: str | None
) -> None:
    record = copy.deepcopy(written[kind])
    change(record)
    found = problems(kind, record)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(problem), found


def test_a_parent_of_the_wrong_type_is_one_problem_not_one_per_child(
    written: dict[str, dict[str, Any]],
) -> None:
    record = copy.deepcopy(written["ERROR"])
    record["context"] = "lost"
    assert problems("ERROR", record) == ["context: str 'lost', expected dict"]


def test_the_check_is_cheap(written: dict[str, dict[str, Any]]) -> None:
    """Once per job on the coordinator's loop: ~1.5-2 µs measured; the bound leaves room for slow CI."""
    record = written["ERROR"]
    per_call = min(timeit.repeat(lambda: problems("ERROR", record), number=2000, repeat=5)) / 2000
    assert per_call < 50e-6


def test_a_record_that_fails_is_written_flagged_counted_and_logged(tmp_path: Path, logged: list[str]) -> None:
    writer = RecordWriter(tmp_path)
    job = Job(id=9, key=("b", "x", 1, 1, 1), path="/b/x", relpath="x", output_path="/n/x")
    bad = writer.error(job, state=JobState.FAILED, category="FileAccess", message="m", component=None)  # type: ignore[arg-type]
    good = writer.error(job, state=JobState.FAILED, category="FileAccess", message="m")
    writer.close()
    assert writer.invalid == 1 and writer.written == 2  # counted, and still written
    data = json.loads((tmp_path / bad.name).read_text())
    assert data["validation"] == {"ok": False, "problems": ["component: NoneType None, expected str"]}
    assert "validation" not in json.loads((tmp_path / good.name).read_text())
    (line,) = [m for m in logged if "fails its schema" in m]
    assert "job 9" in line and "component" in line
