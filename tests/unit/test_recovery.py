"""Start-up recovery against the exact states a SIGKILLed coordinator leaves: real SQLite, real record files.

"Crash" = closing the database without flushing: whatever was not committed is gone, files on disk stay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from coordinator.config import load_config
from coordinator.health import Health
from coordinator.outcomes import Outcomes
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter
from coordinator.recovery import RecoveryReport
from coordinator.states import JobState

RESULT = {
    "output_path": "/n/a.txt.obs.md",
    "facts": {"size": 1, "sha256": "a" * 64, "file_type": "text", "mime": "text/plain", "is_text": True},
}


def setup(tmp_path: Path) -> tuple[JobQueue, RecordWriter]:
    return JobQueue(tmp_path / "q.db"), RecordWriter(tmp_path / "records")


def recover(queue: JobQueue, records: RecordWriter, *, quarantine_after: int) -> RecoveryReport:
    """Recovery as the service runs it, with the job-ending rules of a default config."""
    from coordinator import recovery

    config = load_config(None, {"supervisor.quarantine_after": quarantine_after})
    return recovery.recover(queue, records, Outcomes(config, queue, records, Health()))


def running_job(q: JobQueue, name: str = "a.txt"):
    job = q.add(("b", name, 1, 1, 1), path=Path("/b") / name, relpath=name, output_path=Path("/n") / name)
    assert job is not None
    q.flush()
    q.pop_queued()
    q.mark_running(job, "0.1", lease_s=60)
    q.flush()
    return job


def crash(q: JobQueue) -> None:
    q.db.close()


def test_a_record_written_just_before_the_crash_is_adopted_not_repeated(tmp_path: Path) -> None:
    q, records = setup(tmp_path)
    job = running_job(q)
    written = records.success(job, result=RESULT, duration_s=0.1)  # the record reached the disk ...
    q.finish(job, JobState.DONE, record=written)
    crash(q)  # ... its terminal state did not reach the queue
    q2 = JobQueue(tmp_path / "q.db")
    assert q2.counts()["running"] == 1
    report = recover(q2, records, quarantine_after=2)
    assert report.adopted == 1 and report.requeued == 0
    assert q2.counts()["done"] == 1 and q2.pop_queued() is None
    assert q2.get(job.id).record == written.name
    assert len(list(records.directory.glob("SUCCESS-*.json"))) == 1
    assert q2.indexed_record_names() == {written.name}
    # and a second start finds nothing left to do
    q2.close()
    q3 = JobQueue(tmp_path / "q.db")
    assert not recover(q3, records, quarantine_after=2)


def test_running_jobs_are_charged_a_death_and_requeued_then_quarantined(tmp_path: Path) -> None:
    q, records = setup(tmp_path)
    job = running_job(q)
    crash(q)
    later = [time.time()]
    q2 = JobQueue(tmp_path / "q.db", clock=lambda: later[0])
    report = recover(q2, records, quarantine_after=2)
    assert report.requeued == 1
    assert q2.pop_queued() is None  # retried with backoff (0.25 to 0.5 s by default), not at once
    later[0] += 1.0
    again = q2.pop_queued()
    assert again is not None and again.id == job.id and again.kills == 1
    q2.mark_running(again, "1.1", lease_s=60)
    q2.flush()
    crash(q2)
    q3 = JobQueue(tmp_path / "q.db")
    report = recover(q3, records, quarantine_after=2)
    assert report.quarantined == 1
    assert q3.counts()["quarantined"] == 1
    (error,) = records.directory.glob("ERROR-*.json")
    data = json.loads(error.read_text())
    assert data["state"] == "quarantined" and data["category"] == "WorkerCrash" and data["jobId"] == job.id


def test_half_written_record_temp_files_are_removed(tmp_path: Path) -> None:
    q, records = setup(tmp_path)
    (records.directory / ".SUCCESS-123-456.tmp").write_text("{")
    report = recover(q, records, quarantine_after=2)
    assert report.temp_removed == 1
    assert list(records.directory.iterdir()) == []


def test_record_names_carry_the_job_id_and_never_overwrite(tmp_path: Path) -> None:
    q, records = setup(tmp_path)
    job = running_job(q)
    first = records.error(job, state=JobState.FAILED, category="FileAccess", message="x")
    second = records.error(job, state=JobState.FAILED, category="FileAccess", message="y")
    assert first.name != second.name
    assert first.name.endswith(f"-{job.id:06d}.json")
    assert json.loads((records.directory / first.name).read_text())["error"]["message"] == "x"


def test_an_adopted_record_is_indexed_with_the_trackers_fields_from_its_file(tmp_path: Path) -> None:
    q, records = setup(tmp_path)
    ok, bad = running_job(q, "a.txt"), running_job(q, "b.txt")
    facts = {**RESULT["facts"], "skill": "text"}
    ok_record = records.success(ok, result={**RESULT, "facts": facts}, duration_s=0.25)
    records.error(bad, state=JobState.FAILED, category="FileContent", message="corrupt", component="worker")
    crash(q)  # both records reached the disk, neither terminal state the queue
    q2 = JobQueue(tmp_path / "q.db")
    assert recover(q2, records, quarantine_after=2).adopted == 2
    rows = q2.db.execute(
        "SELECT kind, category, severity, component, duration_s, bytes, skill, file_type FROM records "
        "ORDER BY kind"
    ).fetchall()
    assert [tuple(r) for r in rows] == [
        ("ERROR", "FileContent", "INFO", "worker", None, None, None, None),
        ("SUCCESS", None, None, None, 0.25, 1, "text", "text"),
    ]
    assert q2.get(ok.id).record == ok_record.name
    q2.close()
