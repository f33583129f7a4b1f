"""Deadlines, graceful stops and slots that keep dying, with real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.harness import RunningService, wait_for

pytestmark = pytest.mark.timeout(120)

BIG = 512 * 1024 * 1024  # sparse: costs no disk, but a second or two of hashing
ALLOW_BIG = "\n[jobs]\nmax_input_bytes = 8589934592\n"


def drop_big(svc: RunningService, name: str) -> None:
    staging = svc.base / f".{name}"
    with open(staging, "wb") as fh:
        fh.truncate(BIG)
    os.rename(staging, svc.bucket / name)


def test_a_job_past_its_deadline_is_cancelled_as_timeout_and_the_worker_replaced(scratch: Path) -> None:
    extra = ALLOW_BIG + "deadline_s = 0.3\ndeadline_per_mb_s = 0.0\ndeadline_grace_s = 2.0\n"
    with RunningService(scratch, workers=1, extra_config=extra) as svc:
        first = svc.wait_ready(1)[0]
        drop_big(svc, "slow.bin")
        wait_for(lambda: svc.status()["jobs"]["failed"] == 1, 30, "the job to fail")
        (error,) = svc.records_of("ERROR")
        assert error["category"] == "Timeout" and "deadline" in error["error"]["message"]
        wait_for(lambda: svc.workers()[0]["pid"] != first["pid"], 15, "a fresh worker")
        wait_for(lambda: svc.workers()[0]["state"] == "ready", 15, "the fresh worker to be ready")
        (svc.bucket / "quick.txt").write_text("fine\n")
        wait_for(lambda: svc.status()["jobs"]["done"] == 1, 30, "a quick file to pass")
        assert svc.stop() == 0


def test_sigterm_lets_the_in_flight_job_finish_then_exits_0(scratch: Path) -> None:
    with RunningService(scratch, workers=1, extra_config=ALLOW_BIG) as svc:
        svc.wait_ready(1)
        drop_big(svc, "inflight.bin")
        wait_for(lambda: svc.workers()[0]["state"] == "busy", 30, "the worker to take the file")
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=30) == 0
        assert (svc.notes / "inflight.bin.obs.md").exists()
        assert len(svc.records_of("SUCCESS")) == 1
        assert "stopping; in-flight jobs get" in svc.log()


def test_a_slot_that_keeps_dying_is_failed_while_the_others_keep_working(scratch: Path) -> None:
    # backoff 0.2 s doubling to 2 s: six deaths in well under the 60 s window.
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        killed: list[int] = []

        def slot0_alive_and_new() -> bool:
            row = svc.workers()[0]
            return row["state"] == "failed" or (row["pid"] is not None and row["pid"] not in killed)

        for _ in range(6):
            wait_for(slot0_alive_and_new, 20, "slot 0 to be restarted")
            row = svc.workers()[0]
            if row["state"] == "failed":
                break
            os.kill(row["pid"], signal.SIGKILL)
            killed.append(row["pid"])
        wait_for(lambda: svc.workers()[0]["state"] == "failed", 20, "slot 0 to be failed")
        assert "FAILED" in svc.log()
        assert svc.workers()[0]["restarts"] == 5
        (svc.bucket / "still.txt").write_text("served by slot 1\n")
        wait_for(lambda: svc.status()["jobs"]["done"] == 1, 30, "slot 1 to process a file")
        assert svc.workers()[1]["jobs_done"] == 1
        assert svc.stop() == 0
