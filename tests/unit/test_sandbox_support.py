"""Helpers shared by the sandbox tests (test_sandbox_*.py); this module holds no tests of its own.

Sandbox layers are irreversible, so every test sandboxes a forked child: `Child` forks, the child runs a
body and writes its JSON-able result (or its traceback) to a pipe, then leaves with os._exit. The parent waits
for the pipe's end-of-file with a deadline, never a fixed sleep, and kills the child if the deadline passes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from protocol.sandbox import SandboxSpec

NEEDLE = "needle in the bucket"


def make_spec(tmp_path: Path, **changes: Any) -> SandboxSpec:
    """A spec whose dirs live in tmp_path: read/ (holding hello.txt), write/, scratch/ (mode 0700) and a
    canary in outside/, which no rule covers."""
    read, write, scratch, outside = (tmp_path / name for name in ("read", "write", "scratch", "outside"))
    for path in (read, write, outside):
        path.mkdir(exist_ok=True)
    scratch.mkdir(mode=0o700, exist_ok=True)
    (read / "hello.txt").write_text(f"first line\n{NEEDLE}\n")
    (outside / "secret.txt").write_text("the canary\n")
    fields: dict[str, Any] = {
        "read": [str(read)],
        "write": [str(write)],
        "scratch": str(scratch),
        "canary": str(outside / "secret.txt"),
    }
    fields.update(changes)
    return SandboxSpec(**fields)


class Child:
    """A forked child running `body`; result() returns what body returned (JSON round-tripped)."""

    def __init__(self, body: Callable[[], Any]) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 0
            try:
                os.close(read_fd)
                try:
                    payload = {"ok": body()}
                except BaseException:
                    payload = {"error": traceback.format_exc()}
                data = json.dumps(payload, default=repr).encode()
                while data:
                    data = data[os.write(write_fd, data) :]
            except BaseException:
                status = 70
            finally:
                os._exit(status)
        os.close(write_fd)
        self.pid = pid
        self._fd = read_fd
        self._reaped = False

    def fileno(self) -> int:
        """The pipe the result arrives on (readable at end-of-file when the child is done)."""
        return self._fd

    def result(self, timeout: float = 20.0) -> Any:
        """Wait for the child's result; fail the test with its traceback if the body raised."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"sandboxed child {self.pid} gave no result within {timeout}s")
                ready, _, _ = select.select([self._fd], [], [], left)
                if ready:
                    chunk = os.read(self._fd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            _, status = os.waitpid(self.pid, 0)
            self._reaped = True
        finally:
            self.close()
        if not chunks:
            pytest.fail(f"sandboxed child died without a result (wait status {status:#x})")
        payload = json.loads(b"".join(chunks))
        if "error" in payload:
            pytest.fail(f"sandboxed child raised:\n{payload['error']}")
        return payload["ok"]

    def close(self) -> None:
        """Kill the child if it still runs, reap it and close the pipe."""
        if not self._reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self._reaped = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def in_child(body: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run body in a forked child and return its result."""
    return Child(body).result(timeout)


def errno_of(call: Callable[[], object]) -> int:
    """The errno `call` fails with (0 when it succeeds)."""
    try:
        call()
    except OSError as exc:
        return exc.errno or -1
    return 0


def reports_by_name(reports: list[Any]) -> dict[str, Any]:
    """{name: report} for LayerReports or their JSON dumps."""
    return {(r["name"] if isinstance(r, dict) else r.name): r for r in reports}


def cgroup2_dir() -> str | None:
    """The cgroup v2 dir this process is in (mount point + path), or None without a cgroup2 mount."""
    mount = None
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                fields = left.split()
                if fields[3] == "/":
                    mount = fields[4]
                    break
    if mount is None:
        return None
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            ident, _, path = line.rstrip("\n").split(":", 2)
            if ident == "0":
                return os.path.normpath(mount + path)
    return None
