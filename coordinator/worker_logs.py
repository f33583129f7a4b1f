"""Workers' log lines, carried through a pipe per worker into the coordinator's own log stream.

Why not let workers write to our stderr directly: a worker writes under its sandbox's `RLIMIT_FSIZE`, so once
our stderr is a regular file larger than that limit, every line a worker wrote would be refused (EFBIG) and
lost; and a worker flooding its log would flood ours unchecked. Through a pipe, the file size limit does not
apply, and this relay decides what gets through:

- whole lines only, so lines from different workers never interleave mid-line; a line longer than
  `MAX_LINE` is cut and marked;
- at most `RATE_BYTES_PER_S` per worker (a token bucket with a second's burst), the rest dropped and the
  drop said once it ends;
- the worker's end is non-blocking (`worker/logsetup.py`), so a relay that falls behind costs the worker
  lines, never a blocked heartbeat.

The service's loop polls the read ends beside its sockets; nothing here blocks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

MAX_LINE = 16 * 1024
RATE_BYTES_PER_S = 256 * 1024
_READ = 64 * 1024


@dataclass
class _Stream:
    name: str
    pipe: IO[bytes]
    partial: bytearray = field(default_factory=bytearray)
    tokens: float = float(RATE_BYTES_PER_S)
    refilled: float = 0.0
    dropped: int = 0


class WorkerLogs:
    """The read ends of every live worker's log pipe, and where their lines go."""

    def __init__(self, out: IO[bytes] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out if out is not None else sys.stderr.buffer
        self.clock = clock
        self._streams: dict[int, _Stream] = {}

    def add(self, pipe: IO[bytes] | None, name: str) -> None:
        """Relay what the worker `name` writes to `pipe` (its stderr's read end)."""
        if pipe is None:
            return
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        self._streams[fd] = _Stream(name, pipe, refilled=self.clock())

    def fds(self) -> list[int]:
        """The descriptors to poll."""
        return list(self._streams)

    def read(self, fd: int) -> None:
        """The pipe `fd` is readable: pass its complete lines on; at end of file, close it."""
        stream = self._streams.get(fd)
        if stream is None:
            return
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            if stream.partial:
                self._emit(stream, bytes(stream.partial) + b"\n")
            self._close(fd)
            return
        stream.partial += chunk
        *lines, rest = bytes(stream.partial).split(b"\n")
        if len(rest) > MAX_LINE:  # no end in sight: pass on what we have
            lines.append(rest)
            rest = b""
        stream.partial = bytearray(rest)
        for line in lines:
            cut = len(line) > MAX_LINE
            self._emit(stream, line[:MAX_LINE] + (b" [line cut]\n" if cut else b"\n"))
        self.out.flush()

    def close(self) -> None:
        """Drain what is left and close every pipe (we are stopping)."""
        for fd in list(self._streams):
            self.read(fd)
            if fd in self._streams:
                self._close(fd)

    def _emit(self, stream: _Stream, line: bytes | bytearray) -> None:
        now = self.clock()
        stream.tokens = min(
            float(RATE_BYTES_PER_S), stream.tokens + (now - stream.refilled) * RATE_BYTES_PER_S
        )
        stream.refilled = now
        if stream.tokens < len(line):
            stream.dropped += len(line)
            return
        if stream.dropped:
            note = (
                f"[worker {stream.name}: {stream.dropped} bytes of log dropped: over {RATE_BYTES_PER_S} B/s]"
            )
            self.out.write(note.encode() + b"\n")
            stream.dropped = 0
        stream.tokens -= len(line)
        self.out.write(line)

    def _close(self, fd: int) -> None:
        stream = self._streams.pop(fd)
        if stream.dropped:
            self.out.write(f"[worker {stream.name}: {stream.dropped} bytes of log dropped]\n".encode())
            self.out.flush()
        stream.pipe.close()
