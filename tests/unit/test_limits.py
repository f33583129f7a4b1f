"""Telling a limit or a sandbox refusal from an ordinary failure (worker.pipeline.limits), no sandbox
needed: the exceptions and counters are built by hand."""

from __future__ import annotations

import errno
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.pipeline import limits
from worker.pipeline.limits import Counters, command_limit, command_refused, limit_error

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def sandboxed(tmp_path: Path) -> Iterator[Path]:
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (cg / "pids.events").write_text("max 0\n")
    limits.configure([str(tmp_path / "bucket"), str(tmp_path / "scratch")], [str(cg)])
    yield cg
    limits.configure([], [])


def _wrapped(exc: BaseException) -> RuntimeError:
    """An exception raised while handling `exc`, as a handler's own code would chain it."""
    try:
        raise exc
    except BaseException:
        try:
            raise RuntimeError("handler gave up")
        except RuntimeError as outer:
            return outer


def test_memory_file_size_and_fork_refusals_are_resource_limits() -> None:
    assert limit_error(MemoryError()).category == "ResourceLimit"  # type: ignore[union-attr]
    big = limit_error(_wrapped(OSError(errno.EFBIG, "File too large")))
    assert big is not None and (big.category, big.code) == ("ResourceLimit", "EFBIG")
    # EAGAIN alone is any non-blocking call that would block: only the cgroup's counter says "fork bomb".
    assert limit_error(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")) is None


def test_network_and_path_refusals_are_sandbox_violations(sandboxed: Path, tmp_path: Path) -> None:
    net = limit_error(OSError(errno.ENETUNREACH, "Network is unreachable"))
    assert net is not None and net.category == "SandboxViolation"
    call = limit_error(PermissionError(errno.EPERM, "Operation not permitted"))
    assert call is not None and call.category == "SandboxViolation"
    outside = limit_error(PermissionError(errno.EACCES, "Permission denied", "/etc/shadow"))
    assert outside is not None and "/etc/shadow" in outside.message


def test_a_permission_problem_inside_the_bucket_is_not_the_sandbox(sandboxed: Path, tmp_path: Path) -> None:
    inside = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "bucket" / "locked.txt"))
    assert limit_error(inside) is None
    assert limit_error(ValueError("bad data")) is None


def test_cgroup_counters_that_rise_during_a_skill_name_the_limit(sandboxed: Path) -> None:
    before = Counters.read()
    (sandboxed / "pids.events").write_text("max 4\n")
    fork = limit_error(RuntimeError("could not start"), before)
    assert fork is not None and fork.code == "EAGAIN"
    before = Counters.read()
    (sandboxed / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert command_limit(signal.SIGKILL, None, "", before) == (
        "ResourceLimit",
        "hit the memory limit (OOM-killed)",
        "ENOMEM",
    )


def test_commands_killed_by_rlimit_signals_or_refused_by_the_sandbox() -> None:
    quiet = Counters()
    assert command_limit(signal.SIGXCPU, None, "", quiet)[0] == "ResourceLimit"  # type: ignore[index]
    assert command_limit(signal.SIGXFSZ, None, "", quiet)[2] == "SIGXFSZ"  # type: ignore[index]
    assert command_limit(None, 128 + signal.SIGXFSZ, "", quiet)[2] == "SIGXFSZ"  # type: ignore[index]
    assert command_limit(None, 1, "MemoryError\n", quiet)[2] == "ENOMEM"  # type: ignore[index]
    assert command_limit(None, 1, "usage: tool FILE", quiet) is None
    assert command_refused("cat: /secret: Permission denied\n")
    assert not command_refused("usage: tool FILE")
