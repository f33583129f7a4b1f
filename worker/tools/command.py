"""Run one external command for a skill, safely: no shell, bounded time, bounded memory, nothing left behind.

`run_command` starts the command in its own session (so its process group id is its pid), with stdin from
/dev/null or a given file and no inherited descriptors. One thread watches both pipes and the child's exit
with a selector, so a child flooding one pipe while the other fills cannot deadlock us, and no reader
threads are needed. Output is bounded: the first `max_output_bytes` of stdout (the child's whole group is
killed as soon as it writes more) and the last 4 KiB of stderr. On timeout the group gets SIGTERM, then
SIGKILL after a short grace. When the command ends, whatever it left running in its group is killed too.

Every signal to the group is sent while the command itself is still unreaped (running or a zombie): its
pid, which is the group id, cannot be reused until we reap it, so a signal never reaches a stranger's group.

`format_argv` fills `{input}`-style placeholders inside each argument of a template. Nothing ever goes
through a shell, so a file named `; rm -rf ~` is just one argument.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import string
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STDERR_TAIL_BYTES = 4096
# After SIGTERM on timeout, how long the command may take to exit before the group gets SIGKILL.
TERM_GRACE_S = 0.5
# After the command is over (exited or killed), how long we keep draining its pipes. Its group is dead by
# then, so this only matters when something that left the group (setsid) still holds a pipe open.
DRAIN_GRACE_S = 0.5
_READ_CHUNK = 64 * 1024
# Without a pidfd (old kernel, seccomp) the child's exit is noticed by polling at this interval.
_EXIT_POLL_S = 0.05
# exec errors that mean "this tool cannot be run here": not found, not executable, not a program.
_CANNOT_RUN = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENOEXEC})


class ToolMissing(FileNotFoundError):
    """The command's executable cannot be run: not found, not executable or not a program.

    `filename` is the tool as given in argv[0], `strerror` the reason, `errno` the exec error. Callers catch
    this to fall back at once (e.g. from ripgrep to grep) instead of counting a failed run.
    """


@dataclass(frozen=True)
class CommandResult:
    """How one command ended, with its bounded output.

    `exit_code` is None when the command was killed by a signal (then `signal` says which). `stdout` holds at
    most `max_output_bytes`; `truncated` says the command wrote more (and was killed for it if it was still
    running). `dropped_bytes` counts bytes read from either pipe and not kept: stdout past the cap and
    stderr before its tail (output a killed command never wrote is not counted).
    """

    argv: tuple[str, ...]
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr_tail: str
    duration_s: float
    timed_out: bool
    truncated: bool
    dropped_bytes: int

    @property
    def ok(self) -> bool:
        """The command exited 0 on its own, in time, with all of its output kept."""
        return self.exit_code == 0 and not self.timed_out and not self.truncated


def run_command(
    argv: Sequence[str],
    *,
    timeout_s: float,
    max_output_bytes: int,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin_path: str | None = None,
) -> CommandResult:
    """Run `argv` (no shell) and return how it ended; raise ToolMissing when argv[0] cannot be run.

    The call returns within about `timeout_s` + TERM_GRACE_S + DRAIN_GRACE_S, the child reaped and its
    process group killed. `env` replaces the environment (and its PATH is used to find argv[0]) when given.
    A missing `cwd` or `stdin_path` raises a plain OSError: that is the caller's mistake, not a missing tool.
    """
    if isinstance(argv, str | bytes):  # a str is a Sequence[str] too: "ls" would run as ["l", "s"]
        raise TypeError("argv must be a sequence of arguments, not a string")
    args = tuple(argv)
    if not args:
        raise ValueError("argv is empty")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if max_output_bytes < 0:
        raise ValueError(f"max_output_bytes must be >= 0, got {max_output_bytes}")

    started = time.monotonic()
    proc = _spawn(args, cwd=cwd, env=env, stdin_path=stdin_path)
    out = _Output(max_output_bytes)
    try:
        timed_out = _supervise(proc, out, deadline=started + timeout_s)
        proc.wait()
    finally:
        if proc.returncode is None:  # interrupted (KeyboardInterrupt, a bug): still leave nothing running
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    duration = time.monotonic() - started

    code = proc.returncode
    return CommandResult(
        argv=args,
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        stdout=bytes(out.stdout),
        stderr_tail=out.stderr_tail(),
        duration_s=duration,
        timed_out=timed_out,
        truncated=out.overflowed,
        dropped_bytes=out.dropped,
    )


def format_argv(template: Sequence[str], **values: str) -> list[str]:
    """Fill named placeholders inside each argument of `template`, e.g. `["rg", "--", "{input}"]`.

    Each argument is filled on its own (str.format syntax, `{{` and `}}` for literal braces), never joined
    into a command line, so values are never re-parsed by anything. Only plain `{name}` fields naming one of
    `values` are allowed: unknown names, positional `{}`/`{0}`, attribute or index access (`{input.x}`,
    `{input[0]}`), conversions (`!r`) and format specs raise ValueError.
    """
    if isinstance(template, str | bytes):
        raise TypeError("template must be a sequence of arguments, not a string")
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"value for {{{name}}} must be a str, got {type(value).__name__}")
    return [_format_one(arg, values) for arg in template]


# -- starting -----------------------------------------------------------------------------------------------


def _spawn(
    args: tuple[str, ...], *, cwd: str | None, env: Mapping[str, str] | None, stdin_path: str | None
) -> subprocess.Popen[bytes]:
    stdin_file = open(stdin_path, "rb") if stdin_path is not None else None  # noqa: SIM115 - closed below
    try:
        # start_new_session: the command and everything it starts share a fresh process group (id = its
        # pid) that we can kill as a whole without touching the worker's own group.
        #
        # No parent-death signal: setting PR_SET_PDEATHSIG in the child needs preexec_fn, which runs Python
        # between fork and exec and can deadlock when other threads hold locks at fork time (the worker runs
        # jobs on a thread); it also disables vfork. Exec'ing through a small prctl wrapper would cost an
        # interpreter start per command. So if the worker itself is SIGKILLed mid-command, the command runs
        # on until it ends by itself; every normal path (timeout, cap, exit, exception) kills its group.
        return subprocess.Popen(
            args,
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        # subprocess names argv[0] in exec errors and cwd in chdir errors: only the former is a missing tool.
        if exc.errno in _CANNOT_RUN and exc.filename == args[0]:
            raise ToolMissing(exc.errno, exc.strerror or os.strerror(exc.errno), args[0]) from exc
        raise
    finally:
        if stdin_file is not None:
            stdin_file.close()  # the child has its own copy


# -- watching -----------------------------------------------------------------------------------------------


class _Output:
    """What was read from the pipes, bounded: the head of stdout and the tail of stderr."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.dropped = 0
        self.overflowed = False
        self._stderr_trimmed = False

    def add_stdout(self, chunk: bytes) -> None:
        room = self.cap - len(self.stdout)
        if room > 0:
            self.stdout += chunk[:room]
        extra = len(chunk) - max(room, 0)
        if extra > 0:
            self.dropped += extra
            self.overflowed = True

    def add_stderr(self, chunk: bytes) -> None:
        self.stderr += chunk
        # Trim in batches (not on every chunk) so a stderr flood costs O(1) per byte, not O(tail).
        if len(self.stderr) > 2 * STDERR_TAIL_BYTES:
            self._trim_stderr()

    def _trim_stderr(self) -> None:
        excess = len(self.stderr) - STDERR_TAIL_BYTES
        if excess > 0:
            del self.stderr[:excess]
            self.dropped += excess
            self._stderr_trimmed = True

    def stderr_tail(self) -> str:
        self._trim_stderr()
        tail = bytes(self.stderr)
        if self._stderr_trimmed:
            # The cut may have split a UTF-8 sequence: drop its orphaned continuation bytes (at most 3)
            # rather than showing a replacement character for them.
            cut = 0
            while cut < 3 and cut < len(tail) and 0x80 <= tail[cut] < 0xC0:
                cut += 1
            tail = tail[cut:]
            self.dropped += cut
        return tail.decode("utf-8", errors="replace")


def _supervise(proc: subprocess.Popen[bytes], out: _Output, *, deadline: float) -> bool:
    """Pump the pipes until the command is over and its group dead; return whether it timed out.

    Phases: running (until exit, timeout or stdout overflow), terminating (SIGTERM sent on timeout, until
    exit or TERM_GRACE_S), then draining (group SIGKILLed, pipes read until EOF or DRAIN_GRACE_S). The child
    is never reaped here, so its pid (the group id) stays ours for every signal sent.
    """
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
    sel = selectors.DefaultSelector()
    pipes = {proc.stdout.fileno(): out.add_stdout, proc.stderr.fileno(): out.add_stderr}
    for fd in pipes:
        os.set_blocking(fd, False)  # a spurious wakeup must not block a read
        sel.register(fd, selectors.EVENT_READ)
    pidfd = _open_pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)  # readable once the child exits: no polling needed

    timed_out = False
    term_until: float | None = None  # set while terminating
    drain_until: float | None = None  # set while draining
    try:
        while True:
            now = time.monotonic()
            if drain_until is None:
                exited = _has_exited(proc.pid)
                give_up = term_until is not None and now >= term_until
                if exited or out.overflowed or give_up:
                    # Over: kill what is left of the group (stragglers after a normal exit, the flooder, the
                    # one ignoring SIGTERM). The pipes close when the last holder dies.
                    _signal_group(proc.pid, signal.SIGKILL)
                    drain_until = now + DRAIN_GRACE_S
                    if pidfd is not None:
                        sel.unregister(pidfd)  # stays readable from now on: would spin the loop
                        os.close(pidfd)
                        pidfd = None
                elif term_until is None and now >= deadline:
                    timed_out = True
                    _signal_group(proc.pid, signal.SIGTERM)
                    term_until = now + TERM_GRACE_S
            if drain_until is not None and (not pipes or now >= drain_until):
                return timed_out

            if drain_until is not None:
                wake = drain_until
            elif term_until is not None:
                wake = term_until
            else:
                wake = deadline
            wait = max(0.0, wake - now)
            if drain_until is None and pidfd is None:
                wait = min(wait, _EXIT_POLL_S)
            for key, _ in sel.select(wait):
                handler = pipes.get(key.fd)
                if handler is None:
                    continue  # the pidfd: the exit is checked at the top of the loop
                try:
                    chunk = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if chunk:
                    handler(chunk)
                else:  # EOF: every holder of the write end has closed it
                    sel.unregister(key.fd)
                    del pipes[key.fd]
    finally:
        if pidfd is not None:
            os.close(pidfd)
        sel.close()


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits, or None where pidfds are unavailable."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
        return fd
    except OSError:  # ENOSYS before Linux 5.3, or refused by a seccomp filter
        return None


def _has_exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (WNOWAIT): it must stay a zombie until the
    group is signalled for the last time."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped: certainly exited
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the whole group is already gone
        pass


# -- templates ----------------------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


def _format_one(arg: str, values: Mapping[str, str]) -> str:
    try:
        fields = list(_FORMATTER.parse(arg))
    except ValueError as exc:  # a lone "{" or "}"
        raise ValueError(f"bad placeholder in argument {arg!r}: {exc}") from None
    parts: list[str] = []
    for literal, name, spec, conversion in fields:
        parts.append(literal)
        if name is None:  # trailing literal text
            continue
        if not name.isidentifier():
            raise ValueError(f"only plain placeholders like {{input}} are allowed, got {{{name}}} in {arg!r}")
        if conversion is not None or spec:
            raise ValueError(f"conversions and format specs are not allowed: {arg!r}")
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            raise ValueError(f"unknown placeholder {{{name}}} in {arg!r} (known: {known})")
        parts.append(values[name])
    return "".join(parts)
