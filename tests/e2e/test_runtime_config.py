"""Changing a running service: SIGHUP reloads the config file, `ob-ctl reload` does the same with an answer,
and `ob-ctl bucket add | remove` change the buckets without a restart. Real coordinator, real workers (whose
sandboxes must reach a new bucket before its files go out), real files."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from coordinator.ctl import request
from tests.harness import RunningService, cli, wait_for, write_config

pytestmark = pytest.mark.timeout(120)


def ctl(svc: RunningService, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("-m", "coordinator.ctl", "--state-dir", str(svc.state), *args)


def ask(svc: RunningService, command: str, **args: Any) -> Any:
    """One control request with arguments, in-process."""
    return request(svc.state, command, args, timeout_s=5)


def second_bucket(base: Path) -> str:
    """A `[[buckets]]` table for `two`, with its own notes dir (sharing service.output would move the first
    bucket's notes, which a running service refuses)."""
    return f'\n[[buckets]]\nname = "two"\npath = "{base / "two"}"\noutput = "{base / "notes-two"}"\n'


def reload_by_signal(svc: RunningService, what: str) -> None:
    """SIGHUP, and wait for the reload's one summary (or refusal) line."""
    before = svc.log().count(what)
    svc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: svc.log().count(what) > before, 15, f"{what!r} in the log")


def note_appears(path: Path, timeout: float = 30) -> None:
    wait_for(path.exists, timeout, f"the note {path}")


def queued(svc: RunningService) -> int:
    return int(svc.status()["jobs"]["queued"])


def test_sighup_with_a_second_bucket_watches_it(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        write_config(svc.config, scratch, workers=2, extra=second_bucket(scratch))
        reload_by_signal(svc, "config reloaded (SIGHUP)")
        assert f"bucket two added ({scratch / 'two'})" in svc.log()
        (scratch / "two" / "new.txt").write_text("dropped into the new bucket\n")
        (svc.bucket / "old.txt").write_text("the first bucket still works\n")
        note_appears(scratch / "notes-two" / "new.txt.obs.md")
        note_appears(svc.notes / "old.txt.obs.md")
        assert [b["name"] for b in svc.status()["buckets"]] == ["bucket", "two"]
        assert svc.stop() == 0


def test_sighup_with_another_worker_count_scales(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        write_config(svc.config, scratch, workers=3)
        reload_by_signal(svc, "config reloaded (SIGHUP)")
        assert "service.workers 1 -> 3" in svc.log()
        svc.wait_ready(3)
        assert sum(not w["spare"] for w in svc.workers()) == 3
        assert svc.stop() == 0


def test_an_invalid_config_is_refused_in_one_line_and_the_old_one_keeps_running(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        write_config(svc.config, scratch, workers=0)  # out of range
        reload_by_signal(svc, "config reload refused:")
        refused = [line for line in svc.log().splitlines() if "config reload refused" in line]
        assert len(refused) == 1 and "service.workers" in refused[0], refused
        assert svc.proc.poll() is None
        (svc.bucket / "still.txt").write_text("processed with the old config\n")
        note_appears(svc.notes / "still.txt.obs.md")
        assert sum(not w["spare"] for w in svc.workers()) == 1

        # `ob-ctl reload` says the same, as its one line and exit 1.
        answer = ctl(svc, "reload")
        assert answer.returncode == 1 and answer.stdout == ""
        assert (
            answer.stderr.startswith("ob-ctl: reload: config reload refused: ")
            and "service.workers" in answer.stderr
        )
        assert len(answer.stderr.strip().splitlines()) == 1

        write_config(svc.config, scratch, workers=2)
        answer = ctl(svc, "reload")
        assert answer.returncode == 0 and "service.workers 1 -> 2" in answer.stdout, answer
        svc.wait_ready(2)
        assert svc.stop() == 0


def test_ctl_bucket_add_watches_a_directory_until_the_next_reload(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        extra = scratch / "extra"
        # A second bucket in service.output would move the first one's notes: refused, with what to do.
        shared = ctl(svc, "bucket", "add", str(extra))
        assert shared.returncode == 1 and "give it its own --output" in shared.stderr, shared
        inside = ctl(svc, "bucket", "add", str(svc.state / "x"), "--output", str(scratch / "o"))
        assert inside.returncode == 1 and "inside the state dir" in inside.stderr, inside

        added = ctl(
            svc, "bucket", "add", str(extra), "--patterns", "*.txt", "--output", str(scratch / "notes-x")
        )
        assert added.returncode == 0, added
        assert "bucket extra added" in added.stdout and "until the next restart or reload" in added.stdout
        (extra / "a.txt").write_text("alpha\n")
        (extra / "skip.bin").write_bytes(b"\0")
        note_appears(scratch / "notes-x" / "a.txt.obs.md")
        rows = json.loads(ctl(svc, "bucket", "list", "--json").stdout)["buckets"]
        assert [(r["name"], r["patterns"]) for r in rows] == [("bucket", ["*"]), ("extra", ["*.txt"])]
        assert not (scratch / "notes-x" / "skip.bin.obs.md").exists()

        # The file is the truth: a reload of the unchanged file takes the added bucket away again.
        answer = ctl(svc, "reload")
        assert answer.returncode == 0 and "bucket extra removed" in answer.stdout, answer
        assert [b["name"] for b in svc.status()["buckets"]] == ["bucket"]
        assert svc.stop() == 0


def test_a_removed_buckets_queued_jobs_stay_parked_across_a_restart_until_it_returns(scratch: Path) -> None:
    two, notes_two = scratch / "two", scratch / "notes-two"
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        ask(svc, "bucket-add", path=str(two), output=str(notes_two))
        ask(svc, "drain")
        for i in range(3):
            (two / f"p{i}.txt").write_text(f"parked {i}\n")
        wait_for(lambda: queued(svc) == 3, 15, "three queued jobs")
        removed = ask(svc, "bucket-remove", bucket="two", path=str(two))
        assert removed == {"bucket": "two", "parked": 3, "cancelled": 0, "running": 0}
        assert svc.status()["parked"] == {"two": 3}
        assert svc.stop() == 0

    # A restart with a config that does not name the bucket: the jobs stay queued, parked, not dispatched.
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        (svc.bucket / "flowing.txt").write_text("dispatch works\n")
        note_appears(svc.notes / "flowing.txt.obs.md")
        assert svc.status()["parked"] == {"two": 3} and queued(svc) == 3
        listed = ctl(svc, "bucket")
        assert "removed bucket two: 3 queued job(s) parked" in listed.stdout, listed

        back = ask(svc, "bucket-add", path=str(two), name="two", output=str(notes_two))
        assert back["parked"] == 3  # held until the worker's sandbox reaches the bucket, then let go
        for i in range(3):
            note_appears(notes_two / f"p{i}.txt.obs.md")
        wait_for(lambda: queued(svc) == 0 and svc.status()["parked"] == {}, 15, "no parked jobs")
        assert len(svc.records_of("SUCCESS")) == 4 and svc.records_of("ERROR") == []
        assert svc.stop() == 0


def test_removing_a_bucket_with_cancel_ends_each_queued_job_with_one_error_record(scratch: Path) -> None:
    two = scratch / "two"
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        ask(svc, "bucket-add", path=str(two), output=str(scratch / "notes-two"))
        ask(svc, "drain")
        for i in range(2):
            (two / f"c{i}.txt").write_text(f"cancel me {i}\n")
        wait_for(lambda: queued(svc) == 2, 15, "two queued jobs")
        answer = ctl(svc, "bucket", "remove", str(two), "--cancel")
        assert answer.returncode == 0 and "2 queued job(s) cancelled" in answer.stdout, answer
        wait_for(lambda: len(svc.records_of("ERROR")) == 2, 15, "two ERROR records")
        records = svc.records_of("ERROR")
        assert {r["relativePath"] for r in records} == {"c0.txt", "c1.txt"}
        assert {(r["category"], r["severity"], r["state"]) for r in records} == {
            ("Cancelled", "INFO", "failed")
        }
        jobs = svc.status()["jobs"]
        assert (jobs["queued"], jobs["failed"]) == (0, 2) and svc.status()["parked"] == {}
        assert svc.stop() == 0
