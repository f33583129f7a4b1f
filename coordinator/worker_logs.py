"""Workers' log lines, carried through a pipe per worker into the coordinator's own log stream.

Why not let workers write to our stderr directly: a worker writes under its sandbox's `RLIMIT_FSIZE`, so once
our stderr is a regular file larger than that limit, every line a worker wrote would be refused (EFBIG) and
lost; and a worker flooding its log would flood ours unchecked. Through a pipe, the file size limit does not
apply, and this relay decides what gets through:

- whole lines only, so lines from different workers never interleave mid-line; a line longer than
  `MAX_LINE` is cut and marked;
- at most `RATE_BYTES_PER_S` per worker (a token bucket with a second's burst): past it the relay stops
  reading that pipe until the bucket refills (the stream leaves `fds()`), so a flood costs the loop
  nothing; the pipe fills, and since the worker's end is non-blocking (set here, on the write end we
  create), the worker loses lines, never a blocked heartbeat;
- control characters are shown as "?", so a line cannot drive the terminal it ends up on;
- if our own stderr goes away (a closed pipe), relaying stops; the loop does not.

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
    resume_at: float = 0.0
    throttled: bool = False


#: Bytes below 0x20 (but tab) and DEL, as "?".
_CONTROL = bytes(c if (c >= 0x20 and c != 0x7F) or c == 0x09 else 0x3F for c in range(256))


class WorkerLogs:
    """The read ends of every live worker's log pipe, and where their lines go."""

    def __init__(self, out: IO[bytes] | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.out: IO[bytes] | None = out if out is not None else sys.stderr.buffer
        self.clock = clock
        self._streams: dict[int, _Stream] = {}

    @staticmethod
    def pipe() -> tuple[int, int]:
        """A new log pipe: (read end, write end), the write end non-blocking for the worker."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        return r, w

    def add(self, read_end: int, name: str) -> None:
        """Relay what the worker `name` writes into the pipe whose read end is `read_end` (ours now)."""
        os.set_blocking(read_end, False)
        now = self.clock()
        self._streams[read_end] = _Stream(name, os.fdopen(read_end, "rb", buffering=0), refilled=now)

    def fds(self) -> list[int]:
        """The descriptors to poll now (a throttled stream sits out until its bucket refills)."""
        now = self.clock()
        return [fd for fd, stream in self._streams.items() if stream.resume_at <= now]

    def read(self, fd: int) -> None:
        """The pipe `fd` is readable: pass its complete lines on; at end of file, close it."""
        stream = self._streams.get(fd)
        if stream is None:
            return
        now = self.clock()
        stream.tokens = min(
            float(RATE_BYTES_PER_S), stream.tokens + (now - stream.refilled) * RATE_BYTES_PER_S
        )
        stream.refilled = now
        if stream.tokens < 1:
            stream.resume_at = now + 0.1
            if not stream.throttled:
                stream.throttled = True
                self._write(
                    f"[worker {stream.name}: log over {RATE_BYTES_PER_S} B/s; lines dropped]\n".encode()
                )
            return
        try:
            chunk = os.read(fd, min(_READ, int(stream.tokens)))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            if stream.partial:
                self._write(bytes(stream.partial).translate(_CONTROL) + b"\n")
            self._streams.pop(fd).pipe.close()
            return
        stream.tokens -= len(chunk)
        stream.throttled = False
        stream.partial += chunk
        *lines, rest = bytes(stream.partial).split(b"\n")
        if len(rest) > MAX_LINE:  # no end in sight: pass on what we have
            lines.append(rest)
            rest = b""
        stream.partial = bytearray(rest)
        if lines:
            out = bytearray()
            for line in lines:
                out += line[:MAX_LINE].translate(_CONTROL)
                out += b" [line cut]\n" if len(line) > MAX_LINE else b"\n"
            self._write(bytes(out))

    def close(self) -> None:
        """Pass on what is already in the pipes, once, and close them (we are stopping)."""
        for fd in list(self._streams):
            self._streams[fd].resume_at = 0.0
            self.read(fd)
            stream = self._streams.pop(fd, None)
            if stream is not None:
                stream.pipe.close()

    def _write(self, data: bytes) -> None:
        if self.out is None:
            return
        try:
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError):  # our stderr is gone (a closed pipe): stop relaying, keep running
            self.out = None
