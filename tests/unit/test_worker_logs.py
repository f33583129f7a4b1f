"""The relay of workers' log pipes: whole lines, long lines cut, a flood rate-limited, the end noticed."""

from __future__ import annotations

import io
import os

import pytest

from coordinator import worker_logs
from coordinator.worker_logs import WorkerLogs

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _relay() -> tuple[WorkerLogs, io.BytesIO, int, Clock]:
    out, clock = io.BytesIO(), Clock()
    logs = WorkerLogs(out, clock=clock)
    r, w = os.pipe()
    logs.add(os.fdopen(r, "rb", buffering=0), "0.1")
    return logs, out, w, clock


def test_only_whole_lines_pass_and_the_end_closes_the_pipe() -> None:
    logs, out, w, _ = _relay()
    (fd,) = logs.fds()
    os.write(w, b"first line\nsecond ha")
    logs.read(fd)
    assert out.getvalue() == b"first line\n"
    os.write(w, b"lf\nno newline at the end")
    os.close(w)
    logs.read(fd)
    logs.read(fd)  # end of file: the unfinished line is passed on, the pipe closed
    assert out.getvalue() == b"first line\nsecond half\nno newline at the end\n"
    assert logs.fds() == []


def test_a_line_past_the_limit_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_logs, "MAX_LINE", 10)
    logs, out, w, _ = _relay()
    os.write(w, b"x" * 25)
    logs.read(logs.fds()[0])
    assert out.getvalue() == b"x" * 10 + b" [line cut]\n"
    os.close(w)


def test_a_flood_is_rate_limited_and_the_drop_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_logs, "RATE_BYTES_PER_S", 100)
    out, clock = io.BytesIO(), Clock()
    logs = WorkerLogs(out, clock=clock)
    r, w = os.pipe()
    logs.add(os.fdopen(r, "rb", buffering=0), "0.1")
    fd = logs.fds()[0]
    os.write(w, b"a" * 39 + b"\n" + b"b" * 39 + b"\n" + b"c" * 39 + b"\n")  # 120 bytes in one go
    logs.read(fd)
    assert out.getvalue() == b"a" * 39 + b"\n" + b"b" * 39 + b"\n"  # the burst allowance is 100 bytes
    clock.now += 1.0  # a second later the bucket is full again
    os.write(w, b"d\n")
    logs.read(fd)
    assert out.getvalue().endswith(b"[worker 0.1: 40 bytes of log dropped: over 100 B/s]\nd\n")
    os.close(w)
    logs.close()
    assert logs.fds() == []
