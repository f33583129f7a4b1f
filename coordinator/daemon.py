"""Daemon mode (`ob-coordinator start --daemon`): detaching from the terminal, and the pid file.

    parent ──fork──► child ──setsid, fork──► daemon (new session, no terminal)
      │                 └─ exits at once        │ stdin /dev/null, stdout+stderr → logs/coordinator.stderr
      └─ reads the report pipe ◄────────────────┘ "pid N", then "ready" or "error CODE LINE"

The parent validated the config and resolved every path before forking (a bad config is one line and exit
2 in the terminal, with nothing started) and waits on a pipe until the daemon says it is ready (its state
lock held, its sockets bound, its workers started) or why it could not start; then it prints the pid and
exits 0, or prints the daemon's own error line and exits with its code. If the daemon dies without a word,
the pipe's end of file says so.

The working directory is kept, not changed to `/`: relative paths in the config file and the flags (and the
config file itself, which SIGHUP reads again) resolve as they do in the foreground.

One coordinator per state dir is still the `flock` of `coordinator.lock`: the pid file
(`<state-dir>/run/coordinator.pid`, just the pid, as systemd's `PIDFile=` wants it) is written after that
lock is held, so a pid file naming anyone else is stale by construction and is taken over (logged). It is
removed on a clean exit. `ob-ctl stop` finds the coordinator through the lock, and checks the process
(`coordinator_process`) before it signals anything: pids get reused.
"""

from __future__ import annotations

import faulthandler
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from loguru import logger

PID_FILE = "coordinator.pid"
#: The daemon's loguru sink (rotated, see `coordinator.logsetup`) and where its stdout/stderr go, so that a
#: crash's traceback (or faulthandler's dump) is not lost.
LOG_FILE, STDERR_FILE = "coordinator.log", "coordinator.stderr"
#: How long the parent waits for the daemon to be ready before it gives up waiting (the daemon keeps
#: starting: a big queue's recovery can take a while).
READY_TIMEOUT_S = 120.0
#: psutil reads a process's start time in clock ticks: allow for rounding when comparing it with a file's
#: modification time.
_CLOCK_SLACK_S = 1.0
#: File modes the daemon never creates, whatever umask it inherited: world-writable.
_UMASK_FLOOR = 0o002


def pid_file(run_dir: Path) -> Path:
    """`<state-dir>/run/coordinator.pid`."""
    return run_dir / PID_FILE


def log_dir(state_dir: Path) -> Path:
    """`<state-dir>/logs`: the daemon's log files."""
    return state_dir.expanduser().absolute() / "logs"


def parse_pid(text: str) -> int | None:
    """The pid a pid file holds, or None when it holds no positive integer."""
    text = text.strip()
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid > 0 else None


def read_pid_file(path: Path) -> int | None:
    """The pid in `path`, or None (no file, or not a pid)."""
    try:
        return parse_pid(path.read_text(errors="replace")[:64])
    except OSError:
        return None


def write_pid_file(run_dir: Path, pid: int | None = None) -> int | None:
    """Write our pid into `run_dir/coordinator.pid` atomically (a reader sees the old file or the new one,
    never half of one). Call it holding the state lock; returns the stale pid it replaced, if any."""
    pid = os.getpid() if pid is None else pid
    path = pid_file(run_dir)
    old = read_pid_file(path)
    tmp = run_dir / f".{PID_FILE}.{pid}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{pid}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if old is not None and old != pid:
        # We hold the lock, so whoever wrote it is not a coordinator on this state dir any more.
        logger.warning("took over the stale pid file {}: pid {} {}", path, old, describe_pid(old))
        return old
    return None


def remove_pid_file(run_dir: Path, pid: int | None = None) -> None:
    """Remove the pid file if it still names us (never another coordinator's)."""
    path = pid_file(run_dir)
    if read_pid_file(path) == (os.getpid() if pid is None else pid):
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("could not remove the pid file {}: {}", path, exc)


def looks_like_coordinator(cmdline: Sequence[str]) -> bool:
    """Whether a command line is `ob-coordinator start ...` (the console script or `-m coordinator.cli`)."""
    args = list(cmdline)
    for i, arg in enumerate(args):
        script = os.path.basename(arg) == "ob-coordinator"
        module = arg == "coordinator.cli" and i > 0 and args[i - 1] == "-m"
        if (script or module) and "start" in args[i + 1 :]:
            return True
    return False


def coordinator_process(pid: int, started_before: float | None = None) -> psutil.Process | None:
    """The live coordinator with this pid, or None: no such process, a zombie, another program, or a process
    started after `started_before` (a timestamp: the file that named the pid was written by an earlier one,
    so the pid has been reused)."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or not looks_like_coordinator(proc.cmdline()):
            return None
        if started_before is not None and proc.create_time() > started_before + _CLOCK_SLACK_S:
            return None
    except psutil.Error:
        return None
    return proc


def is_gone(proc: psutil.Process) -> bool:
    """Whether a process has exited. A zombie counts as gone: its parent (init, after our double fork) may
    be slow to reap it, or never do so in a container whose pid 1 does not."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def describe_pid(pid: int) -> str:
    """Why a pid from a pid file is stale, for the log: gone, or reused by another program."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "has exited"
        return f"is now another program ({proc.name()})"
    except psutil.Error:
        return "is not running"


# -- detaching -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What the daemon told its parent: its pid, and whether it started (`code` None: it is ready)."""

    pid: int | None
    ready: bool
    code: int | None = None
    line: str = ""


def parse_report(text: str) -> Report:
    """Read the report pipe's content (`pid N`, then `ready` or `error CODE LINE`)."""
    pid: int | None = None
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "pid":
            pid = parse_pid(rest)
        elif word == "ready":
            return Report(pid, True)
        elif word == "error":
            code, _, message = rest.partition(" ")
            return Report(pid, False, int(code) if code.isdigit() else 1, message)
    return Report(pid, False)


class Detached:
    """The daemon's end of the report pipe: `ready()` once the service is up, or `fail()` with the one line
    the parent prints. Whatever comes after the first of them is only logged."""

    def __init__(self, fd: int, state_dir: Path) -> None:
        self._fd: int | None = fd
        self.log_file = log_dir(state_dir) / LOG_FILE
        self.stderr_file = log_dir(state_dir) / STDERR_FILE

    def _send(self, text: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, text.encode(errors="replace"))
        except OSError:  # the parent is gone (killed while waiting): nobody to tell, the daemon runs on
            pass

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def started(self) -> None:
        """Tell the parent our pid (before anything can fail, so its messages can name us)."""
        self._send(f"pid {os.getpid()}\n")

    def ready(self) -> None:
        """The service is up: the parent prints our pid and exits 0."""
        self._send("ready\n")
        self._close()

    def fail(self, code: int, line: str) -> int:
        """Start-up failed: the parent prints `line` and exits `code`; returns `code`."""
        self._send(f"error {code} {' '.join(line.split())}\n")
        self._close()
        return code


def daemonize(state_dir: Path, serve: Callable[[Detached], int]) -> int:
    """Detach and run `serve` in the daemon; returns the exit code of whichever process returns here (the
    parent's, from the daemon's report, or the daemon's own, from `serve`). The intermediate child never
    returns. Call it before anything starts a thread: only the forking thread survives a fork."""
    logs = log_dir(state_dir)
    logs.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()  # (not inherited by the workers: Python's fds are close-on-exec)
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child > 0:
        os.close(write_end)
        os.waitpid(child, 0)  # the intermediate child exits as soon as it has forked the daemon
        return _parent(read_end, logs / STDERR_FILE)
    os.close(read_end)
    try:
        os.setsid()  # a session of our own: no controlling terminal, no SIGHUP/SIGINT from the shell's
        if os.fork() > 0:
            os._exit(0)  # the session leader goes, so the daemon can never acquire a terminal again
        _redirect_stdio(logs / STDERR_FILE)
        # Every other inherited descriptor goes: a pipe the caller passed on fd 3 or higher (a CI runner,
        # `start --daemon 3>&1 | cat`) would otherwise stay open, and the caller hang, until the daemon exits.
        os.closerange(3, write_end)
        os.closerange(write_end + 1, _max_fd())
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the parent must hear of it
        os.write(write_end, f"error 1 ob-coordinator: cannot detach: {exc}\n".encode(errors="replace"))
        os._exit(1)
    old = os.umask(0)
    # The inherited umask, but never one that locks the owner out of its own files or lets anyone else write.
    os.umask((old & 0o077) | _UMASK_FLOOR)
    faulthandler.enable(file=sys.stderr)  # a crash in C code still leaves a trace in coordinator.stderr
    detached = Detached(write_end, state_dir)
    detached.started()
    print(f"--- ob-coordinator daemon pid {os.getpid()}, cwd {os.getcwd()}", file=sys.stderr, flush=True)
    try:
        return serve(detached)
    except BaseException as exc:
        detached.fail(1, f"ob-coordinator: {type(exc).__name__}: {exc} (see {detached.stderr_file})")
        raise  # (the traceback goes to coordinator.stderr)
    finally:
        detached.fail(1, f"ob-coordinator: exited during start-up (see {detached.stderr_file})")


def _max_fd() -> int:
    try:
        return min(int(os.sysconf("SC_OPEN_MAX")), 1 << 20)
    except (ValueError, OSError):
        return 65536


def _redirect_stdio(stderr_path: Path) -> None:
    """stdin from /dev/null; stdout and stderr appended to `stderr_path`."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def _parent(read_end: int, stderr_path: Path) -> int:
    """Wait for the daemon's report; print its pid (exit 0) or its error line (its exit code)."""
    received = b""
    report = Report(None, False)
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while not report.ready and report.code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                print(
                    f"ob-coordinator: pid {report.pid} is not ready after {READY_TIMEOUT_S:g}s; it goes on "
                    f"starting (see {stderr_path.with_name(LOG_FILE)})",
                    file=sys.stderr,
                )
                return 1
            if not select.select([read_end], [], [], left)[0]:
                continue
            chunk = os.read(read_end, 4096)
            if not chunk:  # every write end is closed and nothing said: the daemon died
                print(
                    f"ob-coordinator: the daemon exited during start-up (see {stderr_path})", file=sys.stderr
                )
                return 1
            received += chunk
            # (each message is one write of one whole line, below PIPE_BUF: never read in halves)
            report = parse_report(received.decode(errors="replace"))
    finally:
        os.close(read_end)
    if report.code is not None:
        print(report.line, file=sys.stderr)
        return report.code
    print(f"ob-coordinator running as pid {report.pid} (log: {stderr_path.with_name(LOG_FILE)})")
    return 0
