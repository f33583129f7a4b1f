"""Record files: complete JSON under a name that carries the job id, never a second file under one name, and
no temp file left behind, both through O_TMPFILE and through the named-temp-file fallback."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coordinator import records as records_module
from coordinator.jobs import Job
from coordinator.records import NAME_RE, RecordWriter, WrittenRecord, job_id_of
from coordinator.states import JobState

RESULT: dict[str, Any] = {"output_path": "/n/a.txt.obs.md", "facts": {"size": 3, "sha256": "ab" * 32}}


def job(job_id: int = 42) -> Job:
    return Job(id=job_id, key=("b", "a.txt", 3, 111, 7), path="/b/a.txt", relpath="a.txt", output_path="/n/a")


@pytest.fixture(params=["anonymous", "named"])
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> RecordWriter:
    w = RecordWriter(tmp_path / "records")
    if request.param == "named":
        w._anonymous = False
    yield w
    w.close()


def test_a_record_is_whole_json_named_after_its_job(writer: RecordWriter) -> None:
    written = writer.success(job(), result=RESULT, duration_s=0.25)
    files = os.listdir(writer.directory)
    assert files == [written.name]  # nothing else: no temp file left behind
    assert NAME_RE.match(written.name) and job_id_of(written.name) == 42
    data = json.loads((writer.directory / written.name).read_text())
    assert data["jobId"] == 42 and data["state"] == "done"
    assert data["metadata"]["sha256"] == "ab" * 32 and data["processing"]["duration"] == 0.25


def test_a_second_record_of_a_job_never_replaces_the_first(writer: RecordWriter) -> None:
    first = writer.error(job(), state=JobState.FAILED, category="FileAccess", message="first")
    second = writer.error(job(), state=JobState.FAILED, category="FileAccess", message="second")
    assert first.name != second.name
    messages = {
        json.loads((writer.directory / n).read_text())["error"]["message"] for n in (first.name, second.name)
    }
    assert messages == {"first", "second"}
    assert sorted(os.listdir(writer.directory)) == sorted([first.name, second.name])


def test_a_filesystem_without_o_tmpfile_falls_back_to_a_named_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def no_tmpfile(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if records_module._O_TMPFILE and flags & records_module._O_TMPFILE == records_module._O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    w = RecordWriter(tmp_path / "records")
    written = w.success(job(), result=RESULT, duration_s=0.1)
    assert not w._anonymous
    assert os.listdir(w.directory) == [written.name]
    w.close()


def test_every_error_category_has_a_severity_on_the_seed_scale() -> None:
    from typing import get_args

    from coordinator.records import SEVERITY
    from protocol.messages import ErrorCategory

    assert set(SEVERITY) == set(get_args(ErrorCategory))
    assert set(SEVERITY.values()) == {"INFO", "WARNING", "ERROR"}
    assert (SEVERITY["FileContent"], SEVERITY["FileAccess"], SEVERITY["WorkerCrash"]) == (
        "INFO",
        "WARNING",
        "ERROR",
    )


def test_a_success_record_says_which_fallback_answered(writer: RecordWriter) -> None:
    from protocol.messages import GrepMatch, Recovery

    facts = {
        **RESULT["facts"],
        "grep_matches": [GrepMatch(rule="refs", line=2, text="see ref-1", path="sub/b.txt")],
        "recovery": Recovery(fallback="grep", reason="rg: not installed"),
    }
    written = writer.success(job(), result={"output_path": "/n/a", "facts": facts}, duration_s=0.1)
    data = json.loads((writer.directory / written.name).read_text())
    assert data["recovery"] == {
        "attempted": True,
        "fallback": "grep",
        "successful": True,
        "reason": "rg: not installed",
    }
    assert data["context"]["grepMatches"] == [
        {"rule": "refs", "line": 2, "text": "see ref-1", "path": "sub/b.txt"}
    ]


def test_the_written_record_carries_what_the_index_keeps_and_reads_back_the_same(
    writer: RecordWriter,
) -> None:
    facts = {**RESULT["facts"], "skill": "text", "file_type": "text"}
    ok = writer.success(job(), result={"output_path": "/n/a", "facts": facts}, duration_s=0.25)
    assert (ok.duration_s, ok.bytes, ok.skill, ok.file_type, ok.component) == (0.25, 3, "text", "text", None)
    bad = writer.error(
        job(), state=JobState.QUARANTINED, category="Martian", message="m", component="supervisor"
    )
    assert (bad.category, bad.severity, bad.component) == (
        "Martian",
        "WARNING",
        "supervisor",
    )  # unknown: WARNING
    # Recovery reads a record file back into the same index fields (the timestamp to the microsecond).
    for written, state in ((ok, JobState.DONE), (bad, JobState.QUARANTINED)):
        again, again_state = WrittenRecord.from_file(writer.directory / written.name)
        assert again_state is state
        assert again == replace(written, timestamp=again.timestamp)
        assert abs(again.timestamp - written.timestamp) < 1e-5


def test_every_error_record_has_component_operation_recovery_and_context(tmp_path: Path) -> None:
    """Whichever way a job ends without a note, its ERROR record carries the same keys."""
    from coordinator.config import load_config
    from coordinator.health import Health
    from coordinator.outcomes import Outcomes
    from coordinator.queue import JobQueue
    from protocol.messages import Error

    queue = JobQueue(tmp_path / "q.db")
    w = RecordWriter(tmp_path / "records")
    outcomes = Outcomes(load_config(None, {"supervisor.quarantine_after": 1}), queue, w, Health())
    jobs = [
        queue.add(("b", f"f{i}", 1, 1, i), path=f"/b/f{i}", relpath=f"f{i}", output_path=f"/n/f{i}")
        for i in range(4)
    ]
    assert all(j is not None for j in jobs)
    for j in jobs[:2]:
        queue.mark_running(j, "0.1", lease_s=10)  # type: ignore[arg-type]
    outcomes.worker_error(jobs[0], Error(category="FileContent", message="corrupt", code="ECORRUPT"))  # type: ignore[arg-type]
    outcomes.worker_died(jobs[1], "WorkerCrash", "killed by SIGSEGV", "SIGSEGV")  # type: ignore[arg-type]
    outcomes.not_a_file(jobs[2])  # type: ignore[arg-type]
    outcomes.cancelled(jobs[3], "bucket removed")  # type: ignore[arg-type]
    records = [json.loads(p.read_text()) for p in sorted(w.directory.glob("ERROR-*.json"))]
    assert len(records) == 4 and w.invalid == 0
    assert {r["component"] for r in records} == {"worker", "supervisor", "watcher", "operator"}
    recovery_keys = {frozenset(r["recovery"]) for r in records}
    assert len(recovery_keys) == 1 and {"attempted", "attempts", "workerDeaths", "reason"} <= set(
        *recovery_keys
    )
    for r in records:
        assert r["operation"] and r["severity"] and r["category"]
        assert set(r["context"]) == {"kind", "worker", "attempts", "kills", "lastError", "version"}
    by_component = {r["component"]: r for r in records}
    assert by_component["supervisor"]["context"]["kills"] == 1
    assert by_component["worker"]["context"]["worker"] == "0.1"
    w.close()
    queue.close()


def test_a_quarantined_jobs_temp_note_is_removed(tmp_path: Path) -> None:
    # A worker killed while writing the note leaves the job's temp note; only a retry would reuse it.
    from coordinator.config import load_config
    from coordinator.health import Health
    from coordinator.outcomes import Outcomes
    from coordinator.queue import JobQueue
    from protocol.note_files import job_temp_path

    queue = JobQueue(tmp_path / "q.db")
    w = RecordWriter(tmp_path / "records")
    config = load_config(None, {"supervisor.quarantine_after": 2, "notes.error_sidecars": False})
    outcomes = Outcomes(config, queue, w, Health())
    notes = tmp_path / "notes"
    notes.mkdir()
    job = queue.add(("b", "f", 1, 1, 1), path="/b/f", relpath="f", output_path=notes / "f.obs.md")
    assert job is not None
    temp = Path(job_temp_path(str(notes / "f.obs.md"), job.wire_id))
    temp.write_text("half a note")
    queue.mark_running(job, "0.1", lease_s=10)
    outcomes.worker_died(job, "WorkerCrash", "killed by SIGKILL", "SIGKILL")
    assert temp.exists()  # retried: the retry overwrites and renames it
    queue.flush()
    queue.mark_running(job, "0.2", lease_s=10)
    outcomes.worker_died(job, "WorkerCrash", "killed by SIGKILL", "SIGKILL")
    assert job.state.value == "quarantined" and not temp.exists()
    assert list(notes.iterdir()) == []
    w.close()
    queue.close()
