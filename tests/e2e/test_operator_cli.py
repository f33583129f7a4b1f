"""The operator's CLI against a real service: `health` and its exit codes, the LSB exit codes of `workers`
and `status`, `status --watch`, and the status line `--status-interval` writes to the log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import RunningService, cli, wait_for

pytestmark = pytest.mark.timeout(120)


def ctl(svc: RunningService, *args: str) -> tuple[int, str]:
    result = cli("-m", "coordinator.ctl", "--state-dir", str(svc.state), *args)
    return result.returncode, result.stdout


def test_health_workers_status_and_the_live_view_of_a_healthy_service(scratch: Path) -> None:
    with RunningService(scratch, workers=2, args=("--status-interval", "1")) as svc:
        svc.wait_ready(2)
        for i in range(5):
            (svc.bucket / f"f{i}.txt").write_text(f"file {i}\n")
        svc.wait_terminal(5, 30)
        code, out = ctl(svc, "health")
        assert (code, out.strip()) == (0, "healthy")
        code, out = ctl(svc, "health", "--json")
        assert code == 0 and json.loads(out) == {"health": "healthy", "reasons": []}
        assert ctl(svc, "workers")[0] == 0 and ctl(svc, "status")[0] == 0
        rows = json.loads(ctl(svc, "workers", "--json")[1])
        wait_for(lambda: all(r["ping_ms"] is not None for r in svc.workers()), 10, "a ping round trip")
        assert all(r["last_exit_code"] is None for r in rows)
        code, out = ctl(svc, "status", "--watch", "--frames", "2")
        assert code == 0 and out.count("Open Buckets  HEALTHY") == 2 and "done 5" in out
        wait_for(lambda: "status: healthy | workers 2:" in svc.log(), 10, "a status line in the log")


def test_watch_and_json_together_is_a_usage_error(scratch: Path) -> None:
    result = cli("-m", "coordinator.ctl", "--state-dir", str(scratch), "status", "--watch", "--json")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
