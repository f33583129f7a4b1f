"""Supervision policy with real processes: a handler that fails on purpose on chosen workers drives the
circuit breakers, the balancer strategies, retries, recycling, scaling, failed slots and the fleet guard.
Counts come from the records the service writes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.harness import RunningService, cli, wait_for

pytestmark = pytest.mark.timeout(120)

PAYLOAD = Path(__file__).parent / "payloads" / "faulty_skills.py"
FAST_RETRIES = "retry_backoff_initial_s = 0.05\nretry_backoff_max_s = 0.2"


class Faulty:
    """A real service whose `*.txt` files go to the faulty handler, with the plan under the test's control."""

    def __init__(
        self, base: Path, *, workers: int, extra: str = "", supervisor: str = "", jobs: str = ""
    ) -> None:
        self.skills = base / "skills"
        self.skills.mkdir()
        shutil.copy(PAYLOAD, self.skills / "faulty_skills.py")
        self.plan_path = self.skills / "faulty_plan.json"
        self.plan([])
        config = f"""
[jobs]
skill_paths = ["{self.skills}"]
deadline_s = 5.0
deadline_per_mb_s = 0.0
deadline_grace_s = 1.0
{jobs or FAST_RETRIES}

[[skills]]
pattern = "*.txt"
handler = "faulty_skills:describe"
{extra}
"""
        self.svc = RunningService(
            base,
            workers=workers,
            extra_config=config,
            supervisor_config="spare_workers = 0\nmax_restarts = 100\n" + supervisor,
        )
        self.dropped = 0

    def plan(self, rules: list[dict[str, Any]], **settings: Any) -> None:
        staged = self.plan_path.with_suffix(".tmp")
        staged.write_text(json.dumps({"rules": rules} | settings))
        os.rename(staged, self.plan_path)  # the handler never reads half a plan

    def drop(self, name: str, content: bytes = b"hello\n") -> Path:
        staged = self.svc.base / f".staged-{name}"
        staged.write_bytes(content)
        target = self.svc.bucket / name
        os.rename(staged, target)
        self.dropped += 1
        return target

    def drop_one_by_one(self, names: list[str], timeout: float = 30) -> None:
        """Each file waits for the previous one's record, so every worker is idle when it is dispatched."""
        for name in names:
            self.drop(name)
            self.svc.wait_terminal(self.dropped, timeout)

    def slot_of_successes(self) -> Counter[int]:
        return Counter(int(r["processing"]["worker"].split(".")[0]) for r in self.svc.records_of("SUCCESS"))

    def slot_row(self, index: int) -> dict[str, Any]:
        return next(r for r in self.svc.workers() if r["slot"] == index and not r["spare"])

    def __enter__(self) -> Faulty:
        return self

    def __exit__(self, *exc: object) -> None:
        self.svc.__exit__(*exc)


def test_a_crashing_slot_opens_its_breaker_others_carry_the_load_and_a_probe_closes_it(scratch: Path) -> None:
    extra = "[breaker]\nfailure_threshold = 2\nrecovery_s = 2.0\n"
    with Faulty(scratch, workers=3, extra=extra, supervisor="quarantine_after = 3\n") as f:
        # Slot 1 crashes on every file; the others take 0.1 s a file, so the run outlasts slot 1's restarts.
        f.plan([{"slots": [1], "action": "crash"}, {"action": "slow"}], slow_s=0.1)
        f.svc.wait_ready(3)
        for i in range(40):
            f.drop(f"a{i:02}.txt")
        counts = f.svc.wait_terminal(40, 60)
        assert counts["done"] == 40  # every file crashed on slot 1 was retried elsewhere
        row = f.slot_row(1)
        assert row["breaker"]["opened"] >= 1 and row["restarts"] >= 2
        assert f.slot_of_successes()[1] == 0
        assert "slot 1: breaker closed -> open: 2 consecutive failures" in f.svc.log()
        # Mended: the next probe succeeds and the breaker closes; slot 1 takes work again.
        f.plan([])
        i = 0

        def closed_and_used() -> bool:
            nonlocal i
            f.drop(f"b{i:02}.txt")
            i += 1
            f.svc.wait_terminal(f.dropped, 30)
            return f.slot_row(1)["breaker"]["state"] == "closed" and f.slot_of_successes()[1] > 0

        wait_for(closed_and_used, 30, "slot 1's breaker to close after its probe")
        assert "slot 1: breaker half_open -> closed" in f.svc.log()


def test_a_failure_rate_over_the_window_opens_the_breaker(scratch: Path) -> None:
    extra = "[breaker]\nfailure_threshold = 0\nfailure_rate = 0.3\nwindow = 10\nmin_samples = 4\n"
    with Faulty(scratch, workers=1, extra=extra, supervisor="quarantine_after = 1\n") as f:
        f.plan([{"match": "boom", "action": "crash"}])
        f.svc.wait_ready(1)
        f.drop_one_by_one(["ok1.txt", "boom1.txt", "ok2.txt", "boom2.txt"])
        assert f.slot_row(0)["breaker"]["state"] == "open"
        assert "failure rate 50% over the last 4 jobs" in f.svc.log()


def test_bad_files_never_open_a_breaker(scratch: Path) -> None:
    with Faulty(scratch, workers=1, extra="[breaker]\nfailure_threshold = 2\nmin_samples = 2\n") as f:
        f.plan([{"action": "raise"}])
        f.svc.wait_ready(1)
        for i in range(8):
            f.drop(f"bad{i}.txt")
        counts = f.svc.wait_terminal(8, 30)
        assert counts["failed"] == 8
        errors = f.svc.records_of("ERROR")
        assert {e["category"] for e in errors} == {"ExternalTool"}
        assert all(e["recovery"]["reason"] == "ExternalTool is not retryable" for e in errors)
        breaker = f.slot_row(0)["breaker"]
        assert breaker["state"] == "closed" and breaker["opened"] == 0


@pytest.mark.parametrize(
    ("balancer", "files", "expected"),
    [
        ('strategy = "round_robin"', 9, {0: 3, 1: 3, 2: 3}),
        ('strategy = "weighted"\nweights = [3, 1, 1]', 10, {0: 6, 1: 2, 2: 2}),
    ],
)
def test_balancer_strategies_share_idle_workers_as_configured(
    scratch: Path, balancer: str, files: int, expected: dict[int, int]
) -> None:
    with Faulty(scratch, workers=3, extra=f"[balancer]\n{balancer}\n") as f:
        f.svc.wait_ready(3)
        f.drop_one_by_one([f"r{i:02}.txt" for i in range(files)])
        assert f.slot_of_successes() == expected


def test_workers_are_recycled_by_job_count_and_by_rss_without_restarts(scratch: Path) -> None:
    with Faulty(scratch, workers=2, supervisor="max_jobs_per_worker = 3\nmax_rss_mb = 160\n") as f:
        f.plan([{"match": "leak", "action": "leak"}], leak_mb=96)
        f.svc.wait_ready(2)
        for i in range(12):
            f.drop(f"n{i:02}.txt")
        assert f.svc.wait_terminal(12, 60)["done"] == 12
        # One slot at a time: the other keeps working (past its own limit) until the first is back.
        wait_for(lambda: all(r["recycles"] >= 1 for r in f.svc.workers()), 30, "both slots recycled")
        assert "jobs done (max_jobs_per_worker = 3)" in f.svc.log()
        f.drop_one_by_one(["leak1.txt", "leak2.txt"])  # ~96 MiB each on top of a ~40 MiB worker
        wait_for(lambda: "over max_rss_mb = 160" in f.svc.log(), 30, "a recycle by RSS")
        rows = f.svc.wait_ready(2)
        assert all(r["restarts"] == 0 for r in rows)  # leaving on purpose is not a crash
        assert f.svc.status()["jobs"]["done"] == 14


def test_scaling_up_and_down_under_load_loses_no_job(scratch: Path) -> None:
    with Faulty(scratch, workers=2) as f:
        f.plan([{"action": "slow"}], slow_s=0.05)
        f.svc.wait_ready(2)
        for i in range(60):
            f.drop(f"s{i:02}.txt")
        assert f.svc.ctl("scale", {"workers": 4})["added"] == [2, 3]
        wait_for(lambda: f.svc.status()["jobs"]["done"] >= 20, 30, "some progress at 4 workers")
        assert len(f.svc.ctl("scale", {"workers": 1})["removing"]) == 3
        wait_for(lambda: f.svc.status()["jobs"]["done"] >= 35, 30, "progress at 1 worker")
        f.svc.ctl("scale", {"workers": 3})
        counts = f.svc.wait_terminal(60, 60)
        assert counts["done"] == 60 and counts["failed"] == counts["quarantined"] == 0
        records = f.svc.records_of("SUCCESS")
        assert len(records) == 60 and len({r["jobId"] for r in records}) == 60
        wait_for(lambda: len([r for r in f.svc.workers() if not r["spare"]]) == 3, 30, "3 slots left")


def test_drain_resume_and_a_graceful_restart_of_one_worker(scratch: Path) -> None:
    with Faulty(scratch, workers=2) as f:
        f.svc.wait_ready(2)
        f.svc.ctl("drain")
        for i in range(5):
            f.drop(f"d{i}.txt")
        wait_for(lambda: f.svc.status()["jobs"]["queued"] == 5, 30, "5 queued jobs while drained")
        assert f.svc.status()["dispatch"] == "paused" and f.svc.status()["jobs"]["done"] == 0
        f.svc.ctl("resume")
        assert f.svc.wait_terminal(5, 30)["done"] == 5
        before = f.slot_row(0)
        assert f.svc.ctl("restart-worker", {"slot": 0})["slot"] == 0
        wait_for(
            lambda: f.slot_row(0)["pid"] not in (None, before["pid"]) and f.slot_row(0)["state"] == "ready",
            30,
            "slot 0 restarted",
        )
        assert f.slot_row(0)["restarts"] == before["restarts"]


def test_a_locked_file_is_retried_with_backoff_until_its_writer_lets_go(scratch: Path) -> None:
    # Backoff from 0.5 s: five attempts span seconds, and the test lets go after the first.
    jobs = "retry_backoff_initial_s = 0.5\nretry_backoff_max_s = 2.0\nretry_max_attempts = 5"
    with Faulty(scratch, workers=1, jobs=jobs) as f:
        f.svc.wait_ready(1)
        staged = scratch / ".locked.csv"
        staged.write_text("a,b\n1,2\n")
        with open(staged, "rb+") as writer:
            fcntl.flock(writer, fcntl.LOCK_EX)  # a writer that locks while it writes
            os.rename(staged, f.svc.bucket / "locked.csv")

            def seen_locked() -> bool:
                jobs = f.svc.ctl("status")["jobs"]
                return jobs["queued"] + jobs["running"] == 1 and "is locked by a writer" in f.svc.log()

            wait_for(seen_locked, 30, "the job to meet the lock")
            fcntl.flock(writer, fcntl.LOCK_UN)
        assert f.svc.wait_terminal(1, 30)["done"] == 1
        (record,) = f.svc.records_of("SUCCESS")
        assert record["processing"]["attempts"] >= 2


def test_exit_78_fails_a_slot_at_once_and_restart_worker_brings_it_back(scratch: Path) -> None:
    with Faulty(scratch, workers=2, supervisor="quarantine_after = 3\n") as f:
        f.plan([{"slots": [0], "action": "exit78"}])
        f.svc.wait_ready(2)
        f.drop_one_by_one([f"e{i}.txt" for i in range(4)])
        row = f.slot_row(0)
        if row["jobs_failed"] == 0:
            pytest.fail(f"slot 0 never got a job: {row}")
        assert row["state"] == "failed" and 50 < row["retry_in_s"] <= 60  # waiting for its trial start
        assert "exited with 78 (EX_CONFIG)" in f.svc.log()
        # What an operator's scripts see: LSB 3 (a slot is not running), and health degraded.
        state = str(f.svc.state)
        assert cli("-m", "coordinator.ctl", "--state-dir", state, "workers").returncode == 3
        assert cli("-m", "coordinator.ctl", "--state-dir", state, "status").returncode == 3
        health = cli("-m", "coordinator.ctl", "--state-dir", state, "health")
        assert health.returncode == 1 and "1 worker slot(s) failed" in health.stdout
        assert row["last_exit_code"] == 78
        f.plan([])
        assert f.svc.ctl("restart-worker", {"slot": 0})["action"] == "starting"
        wait_for(lambda: f.slot_row(0)["state"] == "ready", 30, "slot 0 back")


def test_a_restart_storm_pauses_dispatch_until_a_probe_succeeds(scratch: Path) -> None:
    extra = "[fleet]\nmax_restarts = 3\nrestart_window_s = 60.0\nprobe_interval_s = 1.0\n"
    with Faulty(scratch, workers=2, extra=extra, supervisor="quarantine_after = 2\n") as f:
        f.plan([{"action": "crash"}])  # a broken deployment: every worker dies on every file
        f.svc.wait_ready(2)
        for i in range(20):
            f.drop(f"g{i:02}.txt")
        wait_for(lambda: f.svc.status()["health"] == "unhealthy", 30, "the fleet guard to pause dispatch")
        status = f.svc.status()
        assert status["dispatch"] == "paused" and "restarts" in status["paused_reason"]
        assert status["jobs"]["quarantined"] < 10  # it did not burn through the queue
        f.plan([])  # mended: the next probe succeeds and dispatch resumes
        counts = f.svc.wait_terminal(20, 60)
        assert counts["done"] + counts["quarantined"] == 20 and counts["done"] >= 10
        assert f.svc.status()["dispatch"] == "running"
        assert "fleet: resumed" in f.svc.log()
