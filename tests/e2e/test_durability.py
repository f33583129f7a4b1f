"""Nothing lost, nothing doubled: a SIGKILLed coordinator, a full disk, and what happens to inputs afterwards.

Every test counts record files on disk by the file they name: exactly one terminal record per version.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import RunningService, poll_until, wait_for

pytestmark = pytest.mark.timeout(180)


def records_by_file(svc: RunningService) -> Counter[str]:
    return Counter(json.loads(p.read_text())["relativePath"] for p in svc.records.glob("*.json"))


def drop(bucket: Path, n: int, size: int = 100) -> set[str]:
    names = set()
    for i in range(n):
        sub = bucket / f"d{i % 7}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.txt").write_bytes(b"line %d\n" % i * size)
        names.add(f"d{i % 7}/f{i}.txt")
    return names


def test_a_coordinator_killed_mid_batch_picks_up_where_it_left_off(scratch: Path) -> None:
    svc = RunningService(scratch, workers=4)
    try:
        pids = [r["pid"] for r in svc.wait_ready(4)]
        names = drop(svc.bucket, 600)
        wait_for(lambda: svc.status()["jobs"]["done"] >= 100, 60, "a first part of the batch")
        svc.kill()
        assert poll_until(lambda: not any(psutil.pid_exists(p) for p in pids), 10), "workers outlived it"
        svc = RunningService(scratch, workers=4)
        svc.wait_ready(4)
        assert "recovery after an unclean stop" in svc.log()
        counts = svc.wait_terminal(600, timeout=120)
        assert counts["queued"] == counts["running"] == 0
        per_file = records_by_file(svc)
        assert set(per_file) == names
        assert max(per_file.values()) == 1, [f for f, n in per_file.items() if n > 1]
        done = {f for f in names if (svc.notes / f"{f}.obs.md").exists()}
        assert len(done) == counts["done"]
        assert svc.stop() == 0
    finally:
        if svc.proc.poll() is None:
            svc.kill()


def test_a_restart_without_changes_processes_nothing_again(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        drop(svc.bucket, 30)
        svc.wait_terminal(30, timeout=60)
        assert svc.stop() == 0
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        (svc.bucket / "d0" / "f0.txt").write_text("a new version\n")
        wait_for(lambda: svc.status()["jobs"]["done"] == 31, 30, "only the changed file to be processed")
        assert len(list(svc.records.glob("SUCCESS-*.json"))) == 31
        assert svc.stop() == 0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=64m", str(path)], check=True)


@pytest.mark.parametrize("full", ["notes", "records"])
def test_a_full_disk_degrades_health_and_loses_nothing_once_it_recovers(scratch: Path, full: str) -> None:
    target = scratch / "notes" if full == "notes" else scratch / "state" / "records"
    # (disk_free_mb = 1: the grown 64 MiB disk is then enough for the low-disk alert to clear as well)
    extra = "\n[jobs]\nretry_backoff_initial_s = 0.1\nretry_backoff_max_s = 0.5\n[alerts]\ndisk_free_mb = 1\n"
    with small_tmpfs(target, "48k"), RunningService(scratch, workers=2, extra_config=extra) as svc:
        svc.wait_ready(2)
        names = drop(svc.bucket, 120, size=40)
        reason = "notes cannot be written" if full == "notes" else "records cannot be written"

        def degraded() -> bool:
            status = svc.status()
            return status["health"] == "degraded" and any(reason in r for r in status["reasons"])

        wait_for(degraded, 60, f"health to say {reason}")
        assert svc.status()["jobs"]["done"] < 120
        grow(target)
        counts = svc.wait_terminal(120, timeout=120)
        assert counts["done"] == 120, counts
        per_file = records_by_file(svc)
        assert set(per_file) == names and max(per_file.values()) == 1
        wait_for(lambda: svc.status()["health"] == "healthy", 30, "health to recover")
        assert svc.stop() == 0


def test_after_success_move_takes_the_input_out_of_the_bucket(scratch: Path) -> None:
    extra = '\n[jobs]\nafter_success = "move"\n'
    with RunningService(scratch, workers=2, extra_config=extra) as svc:
        svc.wait_ready(2)
        names = drop(svc.bucket, 20)
        svc.wait_terminal(20, timeout=60)
        processed = svc.state / "processed" / "bucket"
        wait_for(lambda: sum(1 for p in processed.rglob("*.txt")) == 20, 10, "inputs moved")
        assert {p.relative_to(processed).as_posix() for p in processed.rglob("*.txt")} == names
        assert not list(svc.bucket.rglob("*.txt"))
        assert svc.status()["jobs"]["done"] == 20  # moving out is not a new sighting
        assert svc.stop() == 0


def test_after_success_delete_removes_the_input(scratch: Path) -> None:
    extra = '\n[jobs]\nafter_success = "delete"\n'
    with RunningService(scratch, workers=2, extra_config=extra) as svc:
        svc.wait_ready(2)
        drop(svc.bucket, 10)
        svc.wait_terminal(10, timeout=60)
        wait_for(lambda: not list(svc.bucket.rglob("*.txt")), 10, "inputs deleted")
        assert svc.notes_count() == 10
        assert svc.stop() == 0


def test_a_file_rewritten_during_processing_is_not_moved_away(scratch: Path) -> None:
    # The move checks the version: a file whose inode/size/mtime changed is a new job, and stays.
    extra = '\n[jobs]\nafter_success = "move"\n'
    with RunningService(scratch, workers=1, extra_config=extra) as svc:
        svc.wait_ready(1)
        path = svc.bucket / "live.txt"
        path.write_text("one\n")
        wait_for(lambda: svc.status()["jobs"]["done"] >= 1, 30, "the first version")
        staged = svc.base / "live.txt"
        staged.write_text("two, longer\n")
        os.rename(staged, path)
        wait_for(lambda: svc.status()["jobs"]["done"] >= 2, 30, "the second version")
        moved = svc.state / "processed" / "bucket" / "live.txt"
        wait_for(lambda: moved.exists() and moved.read_text() == "two, longer\n", 10, "the new version moved")
        assert svc.stop() == 0
