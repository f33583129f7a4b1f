"""Record files: complete JSON under a name that carries the job id, never a second file under one name, and
no temp file left behind, both through O_TMPFILE and through the named-temp-file fallback."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from coordinator import records as records_module
from coordinator.jobs import Job
from coordinator.records import NAME_RE, RecordWriter, job_id_of
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
