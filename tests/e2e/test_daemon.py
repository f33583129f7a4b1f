"""`ob-coordinator start --daemon` and `ob-ctl stop`, as a user runs them: real detached processes, real
sockets. The daemon leaves the test's process group, so the `daemons` fixture stops (or kills) whatever
coordinator a test started, whether the test passed or not."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coordinator.daemon import looks_like_coordinator
from tests.harness import cli, poll_until, wait_for

pytestmark = pytest.mark.timeout(90)


def _coordinators(base: Path) -> list[psutil.Process]:
    """Coordinator processes started for this test: their command line or working directory is in `base`."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if looks_like_coordinator(cmdline) and (
                str(base) in " ".join(cmdline) or proc.cwd().startswith(str(base))
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def daemons(scratch: Path) -> Iterator[Path]:
    """The scratch dir, with a config (relative paths) in it; afterwards every coordinator started in it is
    stopped with SIGTERM, then SIGKILL (its workers follow through their parent-death signal)."""
    (scratch / "bucket").mkdir()
    (scratch / "ob.toml").write_text(
        """
[service]
workers = 1
state_dir = "state"
output = "notes"
log_level = "DEBUG"
shutdown_grace_s = 3.0

[watcher]
settle_s = 0.2

[supervisor]
heartbeat_interval_s = 0.5
kill_grace_s = 1.0

[[buckets]]
name = "bucket"
path = "bucket"
"""
    )
    try:
        yield scratch
    finally:
        procs = _coordinators(scratch)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGCONT)  # (one test stops it with SIGSTOP)
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)


def start_daemon(base: Path, *extra: str, pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`ob-coordinator start --daemon` from `base`, so that the config's relative paths resolve there."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "start",
            "--daemon",
            "--config",
            str(base / "ob.toml"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=str(base),
        pass_fds=pass_fds,
    )


def ctl(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("-m", "coordinator.ctl", "--state-dir", str(base / "state"), *args, timeout=60)


def pid_of(base: Path) -> int:
    return int((base / "state" / "run" / "coordinator.pid").read_text())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_daemon_starts_detached_answers_works_and_stops(daemons: Path) -> None:
    began = time.monotonic()
    started = start_daemon(daemons)
    assert started.returncode == 0, started.stderr
    assert time.monotonic() - began < 30
    pid = pid_of(daemons)
    assert f"pid {pid}" in started.stdout
    assert psutil.Process(pid).is_running() and not gone(pid)
    assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid  # a session of its own, not its leader
    assert psutil.Process(pid).cwd() == str(daemons)  # kept: relative config paths resolved as in foreground

    status = ctl(daemons, "status", "--json")
    assert status.returncode in (0, 3), status.stderr  # (3: the worker may still be starting)
    assert json.loads(status.stdout)["pid"] == pid

    (daemons / "bucket" / "hello.txt").write_text("hello\n")
    note = daemons / "notes" / "hello.txt.obs.md"
    wait_for(note.exists, 30, "the note of a file dropped into the daemon's bucket")
    log = daemons / "state" / "logs" / "coordinator.log"
    assert f"coordinator {pid} starting" in log.read_text()

    stopped = ctl(daemons, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped coordinator pid {pid}" in stopped.stdout
    assert gone(pid)
    assert not (daemons / "state" / "run" / "coordinator.pid").exists()
    assert f"coordinator {pid} stopped" in log.read_text()


def test_the_daemon_keeps_no_descriptor_its_caller_passed(daemons: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        started = start_daemon(daemons, pass_fds=(write_end,))
        assert started.returncode == 0, started.stderr
        os.close(write_end)
        write_end = -1
        # EOF only once every holder of the write end closed it: a daemon that kept it would block this.
        readable, _, _ = select.select([read_end], [], [], 10)
        assert readable and os.read(read_end, 1) == b""
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert ctl(daemons, "stop").returncode == 0


def test_a_stale_pid_file_is_taken_over(daemons: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = daemons / "state" / "run"
    run.mkdir(parents=True)
    (run / "coordinator.pid").write_text(f"{dead.pid}\n")
    started = start_daemon(daemons)
    assert started.returncode == 0, started.stderr
    pid = pid_of(daemons)
    assert pid != dead.pid
    log = daemons / "state" / "logs" / "coordinator.log"
    assert f"took over the stale pid file {run / 'coordinator.pid'}: pid {dead.pid}" in log.read_text()
    assert ctl(daemons, "stop").returncode == 0
    assert gone(pid) and not (run / "coordinator.pid").exists()


def test_a_second_daemon_is_refused_with_exit_1(daemons: Path) -> None:
    assert start_daemon(daemons).returncode == 0
    pid = pid_of(daemons)
    second = start_daemon(daemons)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"ob-coordinator: already running (pid {pid}) on state dir {daemons / 'state'}"
    ]
    assert pid_of(daemons) == pid and not gone(pid)
    assert [p.pid for p in _coordinators(daemons)] == [pid]
    assert ctl(daemons, "stop").returncode == 0


def test_a_bad_config_with_daemon_exits_2_in_one_line_and_starts_nothing(daemons: Path) -> None:
    (daemons / "ob.toml").write_text("[service]\nworkers = -2\nstate_dir = 'state'\n")
    result = start_daemon(daemons)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "service.workers" in lines[0], result.stderr
    assert result.stdout == ""
    assert not (daemons / "state").exists()
    assert _coordinators(daemons) == []


def test_stop_with_nothing_running_says_so_and_exits_0(daemons: Path) -> None:
    result = ctl(daemons, "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"not running (state dir {daemons / 'state'})"
    as_json = ctl(daemons, "stop", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["running"] is False


def test_stop_signals_a_deaf_coordinator_and_exits_1_on_timeout(daemons: Path) -> None:
    """A coordinator that does not answer (here: SIGSTOPped) gets SIGTERM; still there at the deadline, the
    stop exits 1; once it runs again it stops."""
    assert start_daemon(daemons).returncode == 0
    pid = pid_of(daemons)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 10, "the coordinator to stop")
        result = cli(
            "-m", "coordinator.ctl", "--state-dir", str(daemons / "state"), "--timeout", "1",
            "stop", "--timeout", "1", "--json",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        answer = json.loads(result.stdout)
        assert answer["how"] == "SIGTERM" and answer["stopped"] is False and answer["pid"] == pid
    finally:
        os.kill(pid, signal.SIGCONT)
    assert poll_until(lambda: gone(pid), 30), "the SIGTERM was not acted upon once the coordinator ran again"
    assert not (daemons / "state" / "run" / "coordinator.pid").exists()


def test_a_start_up_failure_in_the_daemon_is_its_parents_one_line_and_exit_code(daemons: Path) -> None:
    """The daemon fails after detaching (a queue database from a newer version): the parent prints the
    daemon's own line and exits with its code, and nothing stays behind."""
    import sqlite3

    state = daemons / "state"
    state.mkdir()
    conn = sqlite3.connect(state / "queue.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    result = start_daemon(daemons)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "schema v999" in lines[0], result.stderr
    assert not (state / "run" / "coordinator.pid").exists()
    assert poll_until(lambda: not _coordinators(daemons), 10)
    assert "schema v999" in (state / "logs" / "coordinator.stderr").read_text()
