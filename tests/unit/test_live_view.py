"""The live view (`ob-ctl status --watch`) and the log's status line, rendered from canned answers."""

from __future__ import annotations

import io
from typing import Any

from coordinator.commands import health, status, workers
from coordinator.commands.live_view import Progress, render_frame, watch
from coordinator.status_line import StatusLine


def picture(**jobs: int) -> dict[str, Any]:
    counts = {"queued": 0, "running": 0, "done": 0, "failed": 0, "quarantined": 0} | jobs
    return {
        "health": "healthy",
        "reasons": [],
        "pid": 42,
        "uptime_s": 75.0,
        "dispatch": "running",
        "paused_reason": None,
        "jobs": counts,
        "workers": {"ready": 1, "busy": 1, "total": 2},
    }


ROW = dict(
    slot=0, pid=7, state="busy", breaker={"state": "closed"}, last_heartbeat_age_s=0.2, ping_ms=0.8,
    jobs_done=3, jobs_failed=0, restarts=1, last_exit_code=-9, rss_bytes=1 << 25, cpu_percent=12.0,
    uptime_s=60.0, sandbox=[], current_file="/b/a.txt", spare=False,
)  # fmt: skip


def test_progress_gives_rate_share_and_eta_while_a_backlog_drains() -> None:
    p = Progress()
    assert p.update(0.0, finished=0, pending=100) == (None, 0.0, None)
    rate, share, eta = p.update(2.0, finished=20, pending=80)
    assert rate == 10.0 and share == 0.2 and eta == 8.0
    assert p.update(3.0, finished=100, pending=0)[1:] == (None, None)  # drained: no bar


def test_a_frame_shows_health_jobs_backlog_errors_and_workers() -> None:
    errors = [
        {"timestamp": 0.0, "job_id": 5, "category": "FileAccess", "relpath": "x|y", "message": "denied"}
    ]
    frame = render_frame(
        picture(done=20, queued=80), [ROW], errors, {"FileAccess": 1}, rate=10.0, share=0.2, eta=8.0, now=0.0
    )
    assert "HEALTHY" in frame and "done 20" in frame and "queued 80" in frame and "10.0 files/s" in frame
    assert "[######------------------------]  20%  ETA 8.0s" in frame
    assert "errors       FileAccess 1" in frame and "job 5  FileAccess" in frame
    assert "0.8ms" in frame and "-9" in frame  # ping and the last exit code (a signal) of the worker


def test_watch_writes_frames_into_a_pipe_and_stops_after_n() -> None:
    answers = {"status": picture(done=1), "workers": [ROW]}
    out = io.StringIO()
    assert watch(answers.__getitem__, io_dir(), frames=2, out=out, sleep=lambda s: None) == 0
    assert out.getvalue().count("Open Buckets") == 2 and "\x1b[" not in out.getvalue()


def io_dir() -> Any:
    from pathlib import Path

    return Path("/nonexistent-state-dir")  # no queue.db: the error summary is simply empty


def test_status_line_is_compact_and_says_the_rate() -> None:
    line = StatusLine(10.0)
    assert line.due(0.0) and not line.due(5.0) and line.due(10.0)
    first = line.line(picture(done=10, queued=5), 0.0)
    assert first.startswith("status: healthy | workers 2: 1 ready, 1 busy | jobs 5 queued, 10 done")
    assert "files/s" in line.line(picture(done=30), 10.0) and "2.0 files/s" in line.line(
        picture(done=50), 20.0
    )
    assert not StatusLine(0.0).due(100.0)


def test_exit_codes_follow_the_lsb_habit() -> None:
    assert status.exit_code(picture()) == 0
    assert status.exit_code(picture() | {"workers": {"ready": 1, "failed": 1, "total": 2}}) == 3
    assert workers.exit_code([ROW]) == 0 and workers.exit_code([ROW | {"state": "backoff"}]) == 3
    assert workers.exit_code([ROW | {"state": "failed", "spare": True}]) == 0  # a spare is not a slot
    assert [health.exit_code({"health": h}) for h in ("healthy", "degraded", "unhealthy")] == [0, 1, 2]
