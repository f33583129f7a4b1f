"""The pure parts of daemon mode: pid files, recognising our coordinator, the start-up report, and what
`ob-ctl stop` says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.commands import stop
from coordinator.daemon import (
    Report,
    coordinator_process,
    is_gone,
    looks_like_coordinator,
    parse_pid,
    parse_report,
    pid_file,
    read_pid_file,
    remove_pid_file,
    write_pid_file,
)
from tests.harness import poll_until


@pytest.mark.parametrize(
    ("text", "pid"),
    [("123\n", 123), (" 7 ", 7), ("", None), ("0\n", None), ("-5", None), ("12abc", None), ("1 2", None)],
)
def test_parse_pid(text: str, pid: int | None) -> None:
    assert parse_pid(text) == pid


def test_pid_file_written_read_and_removed_only_when_ours(tmp_path: Path) -> None:
    assert read_pid_file(pid_file(tmp_path)) is None
    assert write_pid_file(tmp_path, 4242) is None
    assert pid_file(tmp_path).read_text() == "4242\n"
    assert read_pid_file(pid_file(tmp_path)) == 4242
    assert [p.name for p in tmp_path.iterdir()] == ["coordinator.pid"]  # no temporary file left
    remove_pid_file(tmp_path, 99)  # not ours: kept
    assert pid_file(tmp_path).exists()
    remove_pid_file(tmp_path, 4242)
    assert not pid_file(tmp_path).exists()


def test_a_stale_pid_file_is_replaced_and_its_pid_returned(tmp_path: Path) -> None:
    pid_file(tmp_path).write_text("31337\n")
    assert write_pid_file(tmp_path, 4242) == 31337
    assert read_pid_file(pid_file(tmp_path)) == 4242
    assert write_pid_file(tmp_path, 4242) is None  # our own pid again is not stale


@pytest.mark.parametrize(
    ("cmdline", "ours"),
    [
        (["/venv/bin/python", "/venv/bin/ob-coordinator", "start", "--daemon"], True),
        (["/usr/bin/python3", "-m", "coordinator.cli", "start", "--config", "x.toml"], True),
        (["ob-coordinator", "start"], True),
        (["ob-coordinator", "validate-config"], False),
        (["python", "-m", "coordinator.ctl", "stop"], False),
        (["python", "coordinator.cli", "start"], False),
        (["vim", "ob-coordinator.txt", "start"], False),
        ([], False),
    ],
)
def test_looks_like_coordinator(cmdline: list[str], ours: bool) -> None:
    assert looks_like_coordinator(cmdline) is ours


def test_coordinator_process_checks_the_command_line_and_the_start_time() -> None:
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "-m", "coordinator.cli", "start"]
    )
    try:
        # (until it has exec'd, the child still has our command line)
        assert poll_until(lambda: coordinator_process(fake.pid, started_before=time.time()), 10)
        # A pid file written before the process started names another (dead) process: the pid was reused.
        assert coordinator_process(fake.pid, started_before=time.time() - 3600) is None
        fake.kill()
        time.sleep(0.1)  # (not reaped yet: a zombie)
        assert coordinator_process(fake.pid) is None
    finally:
        fake.kill()
        fake.wait()
    assert coordinator_process(fake.pid) is None  # gone
    assert coordinator_process(-1) is None and coordinator_process(0) is None


def test_a_process_that_is_not_a_coordinator_is_never_taken_for_one() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert coordinator_process(sleeper.pid) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_is_gone_counts_a_zombie_as_gone() -> None:
    import psutil

    child = subprocess.Popen(["sleep", "30"])
    proc = psutil.Process(child.pid)
    try:
        assert not is_gone(proc)
        child.kill()
        deadline = time.monotonic() + 5
        while not is_gone(proc) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert is_gone(proc)  # a zombie until we reap it below
    finally:
        child.kill()
        child.wait()
    assert is_gone(proc)


@pytest.mark.parametrize(
    ("text", "report"),
    [
        ("pid 12\nready\n", Report(12, True)),
        ("pid 12\nerror 2 ob-coordinator: no seccomp\n", Report(12, False, 2, "ob-coordinator: no seccomp")),
        ("error 1 ob-coordinator: boom\n", Report(None, False, 1, "ob-coordinator: boom")),
        ("pid 12\n", Report(12, False)),
        ("", Report(None, False)),
        ("pid 12\nerror x what\n", Report(12, False, 1, "what")),
    ],
)  # fmt: skip
def test_parse_report(text: str, report: Report) -> None:
    assert parse_report(text) == report


def test_stop_waits_for_the_grace_periods_the_coordinator_names() -> None:
    assert stop.expected_wait(None) == stop.DEFAULT_WAIT_S
    waited = stop.expected_wait({"shutdown_grace_s": 10.0, "kill_grace_s": 2.0})
    assert waited == 10.0 + 2.0 + 2.0 + 5.0 + stop.MARGIN_S


def test_stop_renders_and_exits() -> None:
    off = {"running": False, "state_dir": "/s"}
    assert stop.render(off) == "not running (state dir /s)" and stop.exit_code(off) == 0
    done = {"running": True, "pid": 9, "how": "asked", "stopped": True, "waited_s": 1.25, "timeout_s": 30}
    assert stop.render(done) == "stopped coordinator pid 9 in 1.2s" and stop.exit_code(done) == 0
    late = done | {"stopped": False, "how": "SIGTERM"}
    assert "still running after 30s (sent SIGTERM" in stop.render(late) and stop.exit_code(late) == 1
