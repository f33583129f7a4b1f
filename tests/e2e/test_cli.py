"""The command lines as a user runs them: exit codes, one-line errors, tables and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import RunningService, cli, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[service]\nworkers = -2\n", "service.workers"),
        ("[service]\nworkerz = 2\n", "service.workerz"),
        ("[jobs]\ndeadline_s = 'soon'\n", "jobs.deadline_s"),
        ("[[buckets]]\npath = '/no/such/parent/bucket'\n", "buckets[0].path"),
    ],
)
@pytest.mark.parametrize("command", ["validate-config", "start"])
def test_bad_config_exits_2_with_one_line_naming_the_field(
    scratch: Path, toml: str, field: str, command: str
) -> None:
    config = scratch / "bad.toml"
    config.write_text(toml)
    result = cli(
        "-m", "coordinator.cli", command, "--config", str(config), "--state-dir", str(scratch / "state")
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and field in lines[0]
    assert "Traceback" not in result.stderr
    assert not (scratch / "state").exists()  # nothing was started


def test_negative_workers_flag_is_a_config_error(scratch: Path) -> None:
    result = cli(
        "-m", "coordinator.cli", "validate-config", "--workers", "-1", "--state-dir", str(scratch / "s")
    )
    assert result.returncode == 2
    assert "service.workers" in result.stderr


def test_valid_config_validates(scratch: Path) -> None:
    result = cli(
        "-m",
        "coordinator.cli",
        "validate-config",
        "--bucket",
        str(scratch / "b"),
        "--state-dir",
        str(scratch),
    )
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def test_ctl_without_a_coordinator_exits_4_with_one_line(scratch: Path) -> None:
    for command in ("workers", "status", "health"):
        result = cli("-m", "coordinator.ctl", "--state-dir", str(scratch / "nothing"), command)
        assert result.returncode == 4
        assert result.stderr.strip().count("\n") == 0
        assert str(scratch / "nothing") in result.stderr and "no coordinator" in result.stderr
        assert result.stdout == ""


def test_ctl_tables_and_json_against_a_running_service(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        (svc.bucket / "one.txt").write_text("hello\n")
        wait_for(lambda: svc.status()["jobs"]["done"] == 1, 30, "one note")
        state = str(svc.state)

        table = cli("-m", "coordinator.ctl", "--state-dir", state, "workers")
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.strip().splitlines()
        assert header.split()[:3] == ["SLOT", "PID", "STATE"] and len(rows) == 3  # 2 workers, 1 warm spare
        assert sum("(spare)" in row for row in rows) == 1

        as_json = cli("-m", "coordinator.ctl", "workers", "--json", "--state-dir", state)
        workers = json.loads(as_json.stdout)
        required = {"slot", "pid", "state", "last_heartbeat_age_s", "jobs_done", "jobs_failed", "restarts"}
        required |= {"rss_bytes", "cpu_percent", "uptime_s", "current_job"}
        assert all(required <= set(w) for w in workers)
        assert [w["spare"] for w in workers] == [False, False, True]
        assert sum(w["jobs_done"] for w in workers) == 1
        assert {w["state"] for w in workers} <= {"ready", "busy"}

        status = json.loads(cli("-m", "coordinator.ctl", "--state-dir", state, "status", "--json").stdout)
        assert {"uptime_s", "buckets", "workers", "jobs"} <= set(status)
        assert set(status["jobs"]) == {"queued", "running", "done", "failed", "quarantined"}
        assert status["jobs"]["done"] == 1 and status["workers"]["total"] == 2

        text = cli("-m", "coordinator.ctl", "--state-dir", state, "status")
        assert "jobs" in text.stdout and "1 done" in text.stdout
        assert svc.stop() == 0


def test_a_second_coordinator_on_the_same_state_dir_is_refused(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        svc.wait_ready(1)
        second = cli("-m", "coordinator.cli", "start", "--config", str(svc.config), timeout=30)
        assert second.returncode == 2
        assert "another coordinator" in second.stderr and str(svc.proc.pid) in second.stderr
        assert svc.workers()[0]["state"] == "ready"
        assert svc.stop() == 0


def test_a_queue_database_from_a_newer_version_is_refused_in_one_line(scratch: Path) -> None:
    import sqlite3

    state = scratch / "state"
    state.mkdir()
    conn = sqlite3.connect(state / "queue.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    result = cli(
        "-m", "coordinator.cli", "start",
        "--state-dir", str(state), "--bucket", str(scratch / "b"), "--output", str(scratch / "notes"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "schema v999" in result.stderr and "Traceback" not in result.stderr
