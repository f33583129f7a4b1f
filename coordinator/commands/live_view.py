"""`ob-ctl status --watch`: the live view, refreshed every second, in the spirit of the seed's console status
screen: health, uptime, job counts and rate, the queue with a progress bar and ETA while a backlog drains,
the error summary and the last five errors, and the workers.

The frame is a pure function of what the coordinator answered (`status`, `workers`) and what the queue
database says about errors (read here, like `ob-ctl errors`), so a test renders one without a terminal.
On a terminal each frame replaces the last; into a pipe, frames follow each other.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from coordinator import queries
from coordinator.commands import workers as workers_command
from coordinator.commands.table import clip, human_seconds, human_time

#: ANSI: cursor home, clear screen.
_CLEAR = "\x1b[H\x1b[2J"
_BAR = 30


@dataclass
class Progress:
    """How a backlog drains, from successive frames: the rate over the view, and the share done since the
    backlog was first seen."""

    started_at: float | None = None
    base_finished: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def update(self, now: float, finished: int, pending: int) -> tuple[float | None, ...]:
        """(files/s over the last 10 s, share done of the current backlog, seconds left) for this frame."""
        self.samples.append((now, finished))
        self.samples = [(t, n) for t, n in self.samples if now - t <= 10.0]
        first_t, first_n = self.samples[0]
        # (at least 0: `ob-ctl retry` reopens finished jobs, and the count of finished ones goes down)
        rate = max(0.0, (finished - first_n) / (now - first_t)) if now > first_t else None
        if pending == 0:
            self.started_at = None
            return rate, None, None
        if self.started_at is None:
            self.started_at, self.base_finished = now, finished
        done = finished - self.base_finished
        share = done / (done + pending) if done + pending else None
        eta = pending / rate if rate else None
        return rate, share, eta


def render_frame(
    status: dict[str, Any],
    rows: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    by_category: dict[str, int],
    *,
    rate: float | None,
    share: float | None,
    eta: float | None,
    now: float,
) -> str:
    """One screen of the live view."""
    jobs = status["jobs"]
    paused = f" ({status['paused_reason']})" if status.get("paused_reason") else ""
    lines = [
        f"Open Buckets  {status['health'].upper()}  {human_time(now)}",
        *(f"  - {reason}" for reason in status.get("reasons", [])),
        f"coordinator  pid {status['pid']}, up {human_seconds(status['uptime_s'])}, dispatch "
        f"{status.get('dispatch', 'running')}{paused}",
        f"jobs         done {jobs['done']}  failed {jobs['failed']}  quarantined {jobs['quarantined']}"
        f"  queued {jobs['queued']}  running {jobs['running']}"
        + (f"  ({rate:.1f} files/s)" if rate is not None else ""),
    ]
    if share is not None:
        filled = round(share * _BAR)
        bar = "#" * filled + "-" * (_BAR - filled)
        left = f"ETA {human_seconds(eta)}" if eta is not None else "ETA -"
        lines.append(f"backlog      [{bar}] {share * 100:3.0f}%  {left}")
    ranked = sorted(by_category.items(), key=lambda kv: -kv[1])
    summary = ", ".join(f"{category} {n}" for category, n in ranked)
    lines.append(f"errors       {summary or 'none'}")
    for e in errors:
        lines.append(
            f"  {human_time(e.get('timestamp'))}  job {e.get('job_id')}  {e.get('category')}  "
            f"{clip(e.get('relpath'), 40)}  {clip(e.get('message'), 60)}"
        )
    lines += ["", workers_command.render(rows)]
    return "\n".join(lines)


def error_summary(state_dir: Path, limit: int = 5) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The last `limit` ERROR records and the open errors (neither retried since nor resolved) by category,
    from queue.db."""
    try:
        with closing(queries.open_queue(state_dir)) as conn:
            recent = queries.errors(conn, limit=limit)
            rows = conn.execute(
                "SELECT category, COUNT(*) FROM records WHERE kind = 'ERROR' AND superseded = 0 "
                "AND resolved = 0 GROUP BY category"
            ).fetchall()
    except (queries.NoQueue, sqlite3.Error):
        return [], {}
    return recent, {str(category): int(n) for category, n in rows}


def watch(
    ask: Callable[[str], Any],
    state_dir: Path,
    *,
    interval: float = 1.0,
    frames: int | None = None,
    out: TextIO = sys.stdout,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show the live view until Ctrl-C (or `frames` frames); `ask(command)` sends one control request.
    Returns the exit code: 0, or the caller's handling of an unreachable coordinator (raised)."""
    progress = Progress()
    tty = out.isatty()
    shown = 0
    try:
        while frames is None or shown < frames:
            status, rows = ask("status"), ask("workers")
            errors, by_category = error_summary(state_dir)
            now = clock()
            jobs = status["jobs"]
            finished = jobs["done"] + jobs["failed"] + jobs["quarantined"]
            rate, share, eta = progress.update(now, finished, jobs["queued"] + jobs["running"])
            frame = render_frame(status, rows, errors, by_category, rate=rate, share=share, eta=eta, now=now)
            out.write((_CLEAR if tty else ("\n" if shown else "")) + frame + "\n")
            out.flush()
            shown += 1
            if frames is None or shown < frames:
                sleep(interval)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `ob-ctl status --watch | head`
        sys.stderr.close()
    return 0
