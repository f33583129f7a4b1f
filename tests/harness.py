"""Start and drive the real service for end-to-end tests: a real coordinator process, real workers, real
sockets, real files. Waiting is always a polled condition with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def poll_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Call `predicate` until it is truthy or `timeout` seconds pass; return whether it became truthy."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Like poll_until, but fail with `what` when the deadline passes."""
    if not poll_until(predicate, timeout):
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def write_config(path: Path, base: Path, *, workers: int = 4, extra: str = "", supervisor: str = "") -> Path:
    """A config file for a service living entirely inside `base`."""
    (base / "bucket").mkdir(exist_ok=True)
    text = f"""
[service]
workers = {workers}
state_dir = "{base / "state"}"
output = "{base / "notes"}"
log_level = "DEBUG"
shutdown_grace_s = 5.0

[watcher]
settle_s = 0.3
rescan_interval_s = 5.0

[supervisor]
heartbeat_interval_s = 0.5
liveness = 3
backoff_initial_s = 0.2
backoff_max_s = 2.0
kill_grace_s = 1.0
{supervisor}

[[buckets]]
name = "bucket"
path = "{base / "bucket"}"
{extra}
"""
    path.write_text(text)
    return path


def cli(
    *args: str, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m coordinator.<module>` the way the console scripts do."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=str(REPO),
        env=env,
    )


class RunningService:
    """One real coordinator process (and the workers it spawns) rooted in a scratch dir."""

    def __init__(
        self,
        base: Path,
        *,
        workers: int = 4,
        extra_config: str = "",
        args: tuple[str, ...] = (),
        supervisor_config: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.bucket = base / "bucket"
        self.notes = base / "notes"
        self.state = base / "state"
        self.records = self.state / "records"
        self.config = write_config(
            base / "ob.toml", base, workers=workers, extra=extra_config, supervisor=supervisor_config
        )
        self.log_path = base / "coordinator.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop() / kill(); "a" keeps restarts
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "start", "--config", str(self.config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(base),
            env={**os.environ, **env} if env else None,
        )

    # -- asking it ----------------------------------------------------------------------------------------

    def ctl(self, command: str, args: dict[str, Any] | None = None) -> Any:
        """One control request, in-process (the CLI is tested separately)."""
        from coordinator.ctl import request

        return request(self.state, command, args, timeout_s=5)

    def workers(self) -> list[dict[str, Any]]:
        return list(self.ctl("workers"))

    def status(self) -> dict[str, Any]:
        return dict(self.ctl("status"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until `n` workers (and every warm spare) are up; return the rows."""
        rows: list[dict[str, Any]] = []

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"coordinator exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                rows[:] = self.workers()
            except Exception:
                return False
            up = [r for r in rows if r["state"] in ("ready", "busy")]
            # every working slot up, and the warm spares too, so tests start from a settled service
            return sum(not r["spare"] for r in up) >= n and len(up) == len(rows)

        wait_for(ready, timeout, f"{n} ready workers and their spares")
        return rows

    def kill_holder_twice(self, name: str = "poison.bin", slot: int = 0) -> list[int]:
        """Drop a slow file (a 4 GiB sparse one, which takes seconds to hash: the config must allow it) as
        `name`, and SIGKILL the worker of `slot` each time it holds it, twice: the file is quarantined.
        Returns the killed pids."""
        staged = self.base / f".{name}"
        with open(staged, "wb") as fh:
            fh.truncate(4 * 1024 * 1024 * 1024)
        os.rename(staged, self.bucket / name)
        killed: list[int] = []
        row: dict[str, Any] = {}

        def holding() -> bool:
            row.update(self.workers()[slot])
            return row["state"] == "busy" and row["pid"] not in killed

        while len(killed) < 2:
            wait_for(holding, 30, "the worker to hold the file")
            os.kill(row["pid"], signal.SIGKILL)
            killed.append(row["pid"])
        return killed

    def notes_count(self) -> int:
        return sum(1 for _ in self.notes.rglob("*.obs.md"))

    def records_of(self, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.records.glob(f"{prefix}-*.json"))]

    def wait_terminal(self, n: int, timeout: float) -> dict[str, int]:
        """Wait until `n` jobs reached a terminal state; return the job counts."""
        counts: dict[str, int] = {}

        def done() -> bool:
            counts.update(self.status()["jobs"])
            return counts["done"] + counts["failed"] + counts["quarantined"] >= n

        wait_for(done, timeout, f"{n} terminal jobs (last counts {counts})")
        return counts

    # -- stopping it --------------------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL the coordinator (its workers must notice by themselves)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            try:
                self.stop(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if exc[0] is not None:
            sys.stderr.write(f"--- coordinator log tail ---\n{self.log()[-6000:]}\n")
