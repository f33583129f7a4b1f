"""`ob-ctl jobs`, `errors`, `retry` and `quarantine` as a user runs them, against a real coordinator.

`jobs`, `errors` and `quarantine list` read the queue database in ob-ctl's own process, so they are checked
both beside a running service and after it stopped; `retry` and `quarantine release` go through the
coordinator, so they are checked for what the service then does with the jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import RunningService, cli, wait_for

pytestmark = pytest.mark.timeout(120)


def ctl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("-m", "coordinator.ctl", "--state-dir", str(state), *args)


def ctl_json(state: Path, *args: str) -> Any:
    result = ctl(state, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ob-ctl"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_jobs_lists_and_filters_while_running_and_after_the_service_stopped(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        (svc.bucket / "a.txt").write_text("alpha\n")
        (svc.bucket / "b.txt").write_text("beta\n")
        os.symlink("/etc/hosts", svc.bucket / "link")
        wait_for(lambda: len(ctl_json(svc.state, "jobs", "--state", "done")) == 2, 30, "two done jobs")
        wait_for(lambda: len(ctl_json(svc.state, "jobs", "--state", "failed")) == 1, 30, "a failed job")

        rows = ctl_json(svc.state, "jobs")
        assert len(rows) == 3
        assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)  # newest first
        (link,) = ctl_json(svc.state, "jobs", "--state", "failed")
        assert link["relpath"] == "link" and link["kind"] == "symlink"
        assert link["last_error"].startswith("FileAccess") and link["record"].startswith("ERROR-")
        done = {r["relpath"]: r for r in ctl_json(svc.state, "jobs", "--state", "done")}
        assert set(done) == {"a.txt", "b.txt"}
        assert all(r["attempts"] == 1 and r["kills"] == 0 and r["worker"] for r in done.values())
        assert all(r["record"].startswith("SUCCESS-") and r["finished_at"] for r in done.values())
        assert ctl_json(svc.state, "jobs", "--bucket", "bucket", "--limit", "1") == rows[:1]
        assert ctl_json(svc.state, "jobs", "--bucket", "elsewhere") == []

        table = ctl(svc.state, "jobs")
        assert table.returncode == 0, table.stderr
        header, *lines = table.stdout.strip().splitlines()
        assert header.split()[:4] == ["ID", "STATE", "BUCKET", "RELPATH"] and len(lines) == 3
        assert svc.stop() == 0

    # The service is gone: the same answers, straight from the state dir.
    assert ctl_json(svc.state, "jobs") == rows
    assert [r["relpath"] for r in ctl_json(svc.state, "errors")] == ["link"]
    assert ctl_json(svc.state, "quarantine") == []
    assert "no quarantined jobs" in ctl(svc.state, "quarantine", "list").stdout
    one_line_error(ctl(svc.state, "retry", "--failed"), 4, "no coordinator", str(svc.state))


def test_errors_filter_by_category_and_age(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        os.symlink("/nowhere", svc.bucket / "dangling")
        wait_for(lambda: ctl_json(svc.state, "errors"), 30, "an ERROR record in the index")
        (error,) = ctl_json(svc.state, "errors", "--since", "1h")
        assert error["category"] == "FileAccess" and error["severity"] == "WARNING"
        assert error["relpath"] == "dangling" and error["state"] == "failed"
        assert error["superseded"] is False and "symlink" in error["message"]
        assert (svc.records / error["name"]).is_file()  # the index names a real record file
        assert ctl_json(svc.state, "errors", "--category", "FileAccess") == [error]
        assert ctl_json(svc.state, "errors", "--category", "fileaccess") == [error]
        assert ctl_json(svc.state, "errors", "--category", "WorkerCrash") == []
        table = ctl(svc.state, "errors", "--category", "FileAccess")
        assert table.returncode == 0 and "FileAccess" in table.stdout and "dangling" in table.stdout
        assert table.stdout.splitlines()[0].split()[:3] == ["TIME", "JOB", "STATE"]
        # The record ages past a one-second window.
        wait_for(lambda: ctl_json(svc.state, "errors", "--since", "1s") == [], 10, "the record to age")
        assert ctl_json(svc.state, "errors", "--since", "1m") == [error]
        assert svc.stop() == 0


def test_retry_requeues_a_failed_job_and_supersedes_its_record(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        (svc.bucket / "fine.txt").write_text("fine\n")
        os.symlink("/etc/hosts", svc.bucket / "link")
        svc.wait_terminal(2, timeout=30)
        ids = {r["relpath"]: r["id"] for r in ctl_json(svc.state, "jobs")}
        link, fine = ids["link"], ids["fine.txt"]

        retried = ctl(svc.state, "retry", str(link))
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.strip() == f"retried 1 job: {link}"

        def records_of_link() -> list[dict[str, Any]]:
            return [r for r in ctl_json(svc.state, "errors") if r["job_id"] == link]

        wait_for(lambda: len(records_of_link()) == 2, 30, "a second record of the retried job")
        newer, older = records_of_link()
        assert (newer["superseded"], older["superseded"]) == (False, True)
        assert newer["name"] != older["name"] and newer["category"] == "FileAccess"
        (job,) = [r for r in ctl_json(svc.state, "jobs") if r["id"] == link]
        assert job["state"] == "failed" and job["record"] == newer["name"]
        assert len(svc.records_of("ERROR")) == 2  # both record files stay on disk

        one_line_error(
            ctl(svc.state, "retry", str(fine)),
            1,
            f"job {fine} is done; only failed or quarantined jobs can be retried",
        )
        one_line_error(ctl(svc.state, "retry", "9999"), 1, "no job 9999")
        one_line_error(ctl(svc.state, "quarantine", "release", str(link)), 1, "only quarantined jobs")
        assert "nothing to retry" in ctl(svc.state, "retry", "--quarantined").stdout

        bulk = ctl_json(svc.state, "retry", "--failed")
        assert bulk == {"retried": [link], "skipped": []}
        wait_for(lambda: len(records_of_link()) == 3, 30, "a third record after retry --failed")
        assert [r["superseded"] for r in records_of_link()] == [False, True, True]
        counts = svc.status()["jobs"]
        assert (counts["done"], counts["failed"], counts["queued"] + counts["running"]) == (1, 1, 0)

        (svc.bucket / "link").unlink()  # nothing left to retry: refused, and the job stays failed
        one_line_error(ctl(svc.state, "retry", str(link)), 1, f"job {link}:", "gone or changed")
        assert ctl_json(svc.state, "retry", "--failed")["skipped"][0]["id"] == link
        assert svc.status()["jobs"]["failed"] == 1
        assert svc.stop() == 0


def test_a_quarantined_job_is_listed_and_released_back_into_its_bucket(scratch: Path) -> None:
    extra = "\n[jobs]\nmax_input_bytes = 8589934592\nquarantine_move = true\n"
    with RunningService(scratch, workers=1, extra_config=extra) as svc:
        svc.wait_ready(1)
        dropped = svc.bucket / "poison.bin"
        svc.kill_holder_twice(dropped.name)
        wait_for(lambda: ctl_json(svc.state, "quarantine"), 30, "a quarantined job")

        (job,) = ctl_json(svc.state, "quarantine", "list")
        moved = svc.state / "quarantine" / "bucket" / "poison.bin"
        assert job["relpath"] == "poison.bin" and job["kills"] == 2 and job["state"] == "quarantined"
        assert job["path"] == str(moved) and job["last_error"].startswith("WorkerCrash")
        assert moved.is_file() and not dropped.exists()
        table = ctl(svc.state, "quarantine")
        assert table.returncode == 0 and "poison.bin" in table.stdout and "WorkerCrash" in table.stdout
        one_line_error(ctl(svc.state, "retry", "--failed", "--quarantined"), 2, "not allowed with")

        released = ctl(svc.state, "quarantine", "release", str(job["id"]))
        assert released.returncode == 0, released.stderr
        assert released.stdout.strip() == f"released job {job['id']}: queued again"
        assert dropped.is_file() and not moved.exists()  # back where it was dropped, before it runs

        def state() -> str:
            (current,) = ctl_json(svc.state, "jobs")  # one job: moving back made no second one
            return str(current["state"])

        wait_for(lambda: state() == "done", 60, "the released job to be processed")
        (done,) = ctl_json(svc.state, "jobs")
        assert done["path"] == str(dropped) and done["record"].startswith("SUCCESS-")
        assert ctl_json(svc.state, "quarantine") == []
        (error,) = ctl_json(svc.state, "errors")
        assert error["superseded"] is True and error["category"] == "WorkerCrash"
        assert (svc.notes / "poison.bin.obs.md").is_file()
        one_line_error(ctl(svc.state, "quarantine", "release", str(job["id"])), 1, "is done")
        assert svc.stop() == 0


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["retry"], "one of the arguments JOB_ID --failed --quarantined is required"),
        (["retry", "3", "--failed"], "not allowed with"),
        (["retry", "--failed", "--quarantined"], "not allowed with"),
        (["retry", "three"], "not a job id"),
        (["retry", "0"], "not a job id"),
        (["quarantine", "release"], "JOB_ID"),
        (["quarantine", "release", "x"], "not a job id"),
        (["quarantine", "free", "3"], "invalid choice"),
        (["jobs", "--state", "lost"], "invalid choice"),
        (["jobs", "--limit", "-1"], "not a row count"),
        (["errors", "--since", "yesterday"], "bad duration 'yesterday'"),
        (["errors", "--since", "5x"], "bad duration"),
        (["frobnicate"], "invalid choice"),
        ([], "COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_one_line(scratch: Path, argv: list[str], fragment: str) -> None:
    one_line_error(ctl(scratch, *argv), 2, fragment)


def test_without_a_coordinator_or_a_queue_it_says_so_in_one_line(scratch: Path) -> None:
    nothing = scratch / "nothing"
    one_line_error(ctl(nothing, "retry", "4"), 4, "no coordinator is running", str(nothing))
    one_line_error(ctl(nothing, "quarantine", "release", "4"), 4, "no coordinator is running")
    for command in (["jobs"], ["errors", "--since", "1h"], ["quarantine"], ["quarantine", "list"]):
        one_line_error(ctl(nothing, *command, "--json"), 4, f"no queue database in {nothing}")
