"""The relay of workers' log pipes: whole lines, long lines cut, control characters defused, a flood
throttled by not reading (the pipe fills, the worker's non-blocking end drops), the end noticed."""

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
    r, w = logs.pipe()
    logs.add(r, "0.1")
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


def test_long_lines_are_cut_and_control_characters_defused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_logs, "MAX_LINE", 10)
    logs, out, w, _ = _relay()
    os.write(w, b"\x1b[2Jclear\n" + b"x" * 25)
    logs.read(logs.fds()[0])
    assert out.getvalue() == b"?[2Jclear\n" + b"x" * 10 + b" [line cut]\n"
    os.close(w)


def test_the_write_end_is_non_blocking_so_a_stalled_relay_never_blocks_a_worker() -> None:
    logs, _, w, _ = _relay()
    with pytest.raises(BlockingIOError):
        while True:
            os.write(w, b"x" * 65536)
    os.close(w)
    logs.close()


def test_a_flood_is_throttled_by_not_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_logs, "RATE_BYTES_PER_S", 100)
    out, clock = io.BytesIO(), Clock()
    logs = WorkerLogs(out, clock=clock)
    r, w = logs.pipe()
    logs.add(r, "0.1")
    fd = logs.fds()[0]
    os.write(w, (b"a" * 39 + b"\n") * 5)  # 200 bytes waiting
    logs.read(fd)  # reads the 100-byte burst allowance only
    assert out.getvalue() == (b"a" * 39 + b"\n") * 2  # and 20 bytes of the third, held back
    logs.read(fd)  # nothing left in the bucket: sits out, said once
    assert b"log over 100 B/s" in out.getvalue()
    assert logs.fds() == []  # not even polled until it refills
    clock.now += 1.0
    assert logs.fds() == [fd]
    logs.read(fd)
    assert out.getvalue().count(b"a" * 39 + b"\n") == 5  # the other 100 bytes: the rest of all five
    os.close(w)
    logs.close()
    assert logs.fds() == []


def test_a_closed_stderr_stops_the_relay_not_the_coordinator() -> None:
    class Gone(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise BrokenPipeError("stderr was closed")

    logs = WorkerLogs(Gone())
    r, w = logs.pipe()
    logs.add(r, "0.1")
    os.write(w, b"line\n")
    logs.read(logs.fds()[0])  # must not raise
    assert logs.out is None
    os.close(w)
    logs.close()
