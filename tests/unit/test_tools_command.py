"""run_command and format_argv, with real subprocesses: exit codes, timeouts that kill the whole process
group (grandchildren included), output caps against floods, and templates that never reach a shell."""

from __future__ import annotations

import errno
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.harness import poll_until
from worker.tools import command
from worker.tools.command import (
    STDERR_TAIL_BYTES,
    TERM_GRACE_S,
    CommandResult,
    ToolMissing,
    format_argv,
    run_command,
)

PY = sys.executable


def run(
    argv: list[str],
    *,
    timeout_s: float = 10.0,
    max_output_bytes: int = 1 << 20,
    cwd: str | None = None,
    stdin_path: str | None = None,
) -> CommandResult:
    return run_command(
        argv, timeout_s=timeout_s, max_output_bytes=max_output_bytes, cwd=cwd, stdin_path=stdin_path
    )


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it (a zombie runs nothing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_group_members(pgid: int) -> list[int]:
    """Members of the group that are not dead yet. Polled, not read once: a SIGKILLed process can take a
    moment to finish exiting (it shows as running, with an empty command line, until it does)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and alive(proc.pid):
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def assert_all_gone(*pids: int) -> None:
    # SIGKILL is delivered when the target is next scheduled: allow it a moment to actually die.
    assert poll_until(lambda: not any(alive(p) for p in pids), timeout=2), [p for p in pids if alive(p)]


# -- normal runs ---------------------------------------------------------------------------------------------


def test_output_and_exit_code_of_a_normal_run() -> None:
    result = run([PY, "-c", "print('hello'); print('world')"])
    assert result.stdout == b"hello\nworld\n"
    assert (result.exit_code, result.signal) == (0, None)
    assert result.ok and not result.timed_out and not result.truncated
    assert result.dropped_bytes == 0 and result.stderr_tail == ""
    assert result.argv == (PY, "-c", "print('hello'); print('world')")


@pytest.mark.parametrize(("tool", "code", "ok"), [("true", 0, True), ("false", 1, False)])
def test_exit_codes_of_true_and_false(tool: str, code: int, ok: bool) -> None:
    result = run([tool])
    assert result.exit_code == code and result.ok is ok and result.stdout == b""


def test_nonzero_exit_keeps_the_stderr_tail() -> None:
    result = run(["/bin/sh", "-c", "echo partial; echo 'it broke' >&2; exit 3"])
    assert (result.exit_code, result.signal) == (3, None)
    assert result.stdout == b"partial\n"
    assert result.stderr_tail == "it broke\n"
    assert not result.ok


def test_stdin_is_dev_null_unless_a_file_is_given(tmp_path: Path) -> None:
    assert run(["cat"], timeout_s=5).stdout == b""  # would hang until the timeout on an inherited stdin
    source = tmp_path / "in.txt"
    source.write_bytes(b"line one\nline two\n")
    assert run(["cat"], stdin_path=str(source)).stdout == b"line one\nline two\n"


def test_cwd_and_env_reach_the_child(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OB_TEST_VALUE": "from the caller"}
    result = run_command(
        ["/bin/sh", "-c", 'pwd; echo "$OB_TEST_VALUE"; echo "${HOME:-no home}"'],
        timeout_s=5,
        max_output_bytes=4096,
        cwd=str(tmp_path),
        env=env,
    )
    assert result.stdout.decode().splitlines() == [str(tmp_path.resolve()), "from the caller", "no home"]


# -- timeouts and leftovers ----------------------------------------------------------------------------------


def test_timeout_kills_the_child_and_its_background_grandchild() -> None:
    # 1.5 s: time for the shell to print both pids even on a loaded machine; the bounds below are loose
    # for the same reason (they tell "killed at the timeout" from "ran for 30 s", nothing finer).
    result = run(["/bin/sh", "-c", "echo $$ ; sleep 30 & echo $! ; sleep 30"], timeout_s=1.5)
    shell, grandchild = (int(word) for word in result.stdout.split())
    assert result.timed_out and not result.ok
    assert (result.exit_code, result.signal) == (None, signal.SIGTERM)  # sh dies of the SIGTERM itself
    assert 1.5 <= result.duration_s < 1.5 + TERM_GRACE_S + 5
    assert_all_gone(shell, grandchild)
    assert poll_until(lambda: live_group_members(shell) == [], timeout=2), live_group_members(shell)


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    # An ignored signal stays ignored across fork and exec: the background sleep ignores SIGTERM too.
    script = "trap '' TERM; echo $$; sleep 30 & echo $!; wait"
    result = run(["/bin/sh", "-c", script], timeout_s=1.5)
    shell, grandchild = (int(word) for word in result.stdout.split())
    assert result.timed_out
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert 1.5 + TERM_GRACE_S - 0.05 <= result.duration_s < 1.5 + TERM_GRACE_S + 5
    assert_all_gone(shell, grandchild)
    assert poll_until(lambda: live_group_members(shell) == [], timeout=2), live_group_members(shell)


@pytest.mark.parametrize("redirect", ["", ">/dev/null 2>&1"], ids=["holding-the-pipes", "detached-output"])
def test_a_double_forked_grandchild_dies_with_the_group_after_a_normal_exit(redirect: str) -> None:
    # The subshell starts a sleep and exits at once: the sleep is orphaned but stays in the command's group.
    result = run(["/bin/sh", "-c", f"echo $$; (sleep 30 {redirect} & echo $!); exit 0"], timeout_s=5)
    shell, grandchild = (int(word) for word in result.stdout.split())
    assert result.ok and not result.timed_out
    assert result.duration_s < 10  # not held up for the orphan's 30 s while it holds our pipes
    assert_all_gone(grandchild)
    assert poll_until(lambda: live_group_members(shell) == [], timeout=2), live_group_members(shell)


def test_without_a_pidfd_the_exit_is_still_noticed_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Old kernels and seccomp filters refuse pidfd_open: the fallback polls for the exit instead.
    monkeypatch.setattr(command, "_open_pidfd", lambda pid: None)
    result = run(["/bin/sh", "-c", "echo $$; (sleep 30 & echo $!); exec >&- 2>&-; sleep 0.2"], timeout_s=5)
    shell, grandchild = (int(word) for word in result.stdout.split())
    assert result.ok and 0.2 <= result.duration_s < 10
    assert_all_gone(grandchild)
    assert poll_until(lambda: live_group_members(shell) == [], timeout=2), live_group_members(shell)


def test_commands_run_from_worker_threads() -> None:
    # The worker runs jobs on a thread: nothing here may depend on being the main thread.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda n: run([PY, "-c", f"print({n} * 2)"]), range(3)))
    assert [r.stdout for r in results] == [b"0\n", b"2\n", b"4\n"] and all(r.ok for r in results)


# -- output caps ---------------------------------------------------------------------------------------------


def test_a_100_mb_stdout_flood_is_cut_at_the_cap_quickly() -> None:
    cap = 1 << 20
    flood = "import sys\nchunk = b'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.buffer.write(chunk)\n"
    result = run([PY, "-c", flood], timeout_s=30, max_output_bytes=cap)
    assert result.truncated and not result.ok and not result.timed_out
    assert len(result.stdout) == cap and set(result.stdout) == {ord("x")}
    assert result.signal == signal.SIGKILL  # killed for it, not read to the end
    assert 0 < result.dropped_bytes < 100 * (1 << 20) - cap
    assert result.duration_s < 5


def test_output_exactly_at_the_cap_is_kept_whole() -> None:
    result = run([PY, "-c", "import sys; sys.stdout.write('y' * 1000)"], max_output_bytes=1000)
    assert result.ok and result.stdout == b"y" * 1000 and result.dropped_bytes == 0


def test_a_stderr_flood_with_little_stdout_does_not_deadlock() -> None:
    # 8 MiB is far past any pipe buffer: reading only stdout (or only after exit) would hang both sides.
    noisy = (
        "import sys\n"
        "sys.stdout.write('start\\n'); sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'e' * (8 << 20) + 'TAIL-\\u00e9'.encode())\n"
        "print('done')\n"
    )
    result = run([PY, "-c", noisy], timeout_s=10)
    assert result.ok and result.stdout == b"start\ndone\n"
    assert result.stderr_tail.endswith("eeeTAIL-é")
    assert len(result.stderr_tail.encode()) == STDERR_TAIL_BYTES
    assert result.dropped_bytes == (8 << 20) + len("TAIL-é".encode()) - STDERR_TAIL_BYTES


# -- tools that cannot run -----------------------------------------------------------------------------------


def test_a_missing_executable_raises_tool_missing() -> None:
    with pytest.raises(ToolMissing) as caught:
        run(["ob-no-such-tool-4f2a"])
    assert isinstance(caught.value, FileNotFoundError)
    assert caught.value.errno == errno.ENOENT
    assert "ob-no-such-tool-4f2a" in str(caught.value)


def test_an_executable_without_permission_raises_tool_missing(tmp_path: Path) -> None:
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)  # no x bit: exec is refused even for root
    with pytest.raises(ToolMissing, match="Permission denied") as caught:
        run([str(script)])
    assert caught.value.errno == errno.EACCES and caught.value.filename == str(script)


def test_a_missing_cwd_is_not_a_missing_tool(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        run(["true"], cwd=str(tmp_path / "gone"))
    assert not isinstance(caught.value, ToolMissing)


@pytest.mark.parametrize("argv", ["ls -l", []])
def test_argv_must_be_a_non_empty_list(argv: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        run(argv)  # type: ignore[arg-type]


# -- templates -----------------------------------------------------------------------------------------------


def test_a_hostile_file_name_stays_one_argument(tmp_path: Path) -> None:
    hostile = "; touch pwned; $(touch pwned2) `touch pwned3` | rm -rf ~ && {input}"
    argv = format_argv([PY, "-c", "import sys; print(sys.argv[1:])", "--", "{input}"], input=hostile)
    assert argv[-2:] == ["--", hostile]
    result = run(argv, cwd=str(tmp_path))
    assert result.ok and result.stdout.decode().strip() == repr(["--", hostile])
    assert list(tmp_path.iterdir()) == []  # nothing was interpreted by a shell


def test_placeholders_are_filled_inside_arguments_and_values_are_not_reparsed() -> None:
    argv = format_argv(["--out={output}.md", "{input}", "-x"], input="a {output} b", output="note")
    assert argv == ["--out=note.md", "a {output} b", "-x"]


def test_doubled_braces_are_literal() -> None:
    assert format_argv(["{{literal}}", "{{{input}}}", "}}{{"], input="f") == ["{literal}", "{f}", "}{"]


def test_an_unknown_placeholder_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        format_argv(["cat", "{inptu}"], input="x")


@pytest.mark.parametrize(
    "arg", ["{input.__class__}", "{input[0]}", "{}", "{0}", "{input!r}", "{input:>10}", "{input", "x}"]
)
def test_attribute_index_positional_and_malformed_fields_are_rejected(arg: str) -> None:
    with pytest.raises(ValueError):
        format_argv([arg], input="x")
