"""Checking what ripgrep and GNU grep printed against the files as they are in the bucket.

The tools cannot be held to the bucket by themselves: ripgrep opens files and subdirectories by path
without `O_NOFOLLOW`, so an entry swapped for a symlink between its listing and its open is followed out
of the bucket, and a file name holding a newline can make a printed line name another file. So no line
they print is shown as it is: `verify` opens each reported file again below the searched directory's
descriptor, one component at a time with `O_NOFOLLOW` (only a regular file, read up to `MAX_FILE_BYTES`
and only as far as the last line asked about), and keeps a line only if the file holds exactly that text
at that number. What is shown is then always what the bucket holds at that place, whatever was followed.

The cost is bounded by what the note shows: only the lines kept by the budget are checked, one read of
each file that has any.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import replace

from worker.tools.fswalk import open_dir
from worker.tools.grep_context import MAX_FILE_BYTES, GrepLine, clean_line

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1024 * 1024
#: How the tools print a path below the directory they search: "./" and then the path.
_PREFIX = "./"


def verify(lines: Sequence[GrepLine], top_fd: int, context_lines: int) -> tuple[list[GrepLine], int]:
    """The `lines` (paths as printed, "./a/b.txt") that the files below `top_fd` hold exactly, in order,
    with paths relative to it ("a/b.txt"), and how many were dropped. A context line left without a kept
    match within `context_lines` goes too, and so does a line repeated."""
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line.path] = max(wanted.get(line.path, 0), line.line)
    held = {path: _read_lines(top_fd, path, upto) for path, upto in wanted.items()}
    checked: list[GrepLine] = []
    seen: set[tuple[str, int]] = set()
    for line in lines:
        text = held[line.path]
        key = (line.path, line.line)
        if text is None or key in seen or line.line < 1 or line.line > len(text):
            continue
        if clean_line(text[line.line - 1]) == line.text:
            seen.add(key)
            checked.append(line)
    kept = _with_matches(checked, context_lines)
    return [replace(line, path=line.path.removeprefix(_PREFIX)) for line in kept], len(lines) - len(kept)


def _with_matches(lines: list[GrepLine], context_lines: int) -> list[GrepLine]:
    """`lines` without the context lines that no kept match of their file is near (its match was
    dropped): shown alone they would read as a file without matches."""
    near: set[tuple[str, int]] = set()
    for line in lines:
        if line.match:
            near.update(
                (line.path, n) for n in range(line.line - context_lines, line.line + context_lines + 1)
            )
    return [line for line in lines if line.match or (line.path, line.line) in near]


def _read_lines(top_fd: int, path: str, upto: int) -> list[bytes] | None:
    """The first `upto` lines (fewer at the end of the file) of the regular file `path` below `top_fd`,
    raw (cleaned only when compared: a line of a big file costs a slice, not a decode); None when it is
    not reached without a symlink or "..", is not a regular file, or cannot be read. Lines past
    MAX_FILE_BYTES are not returned."""
    if not path.startswith(_PREFIX):
        return None  # not a path the tool printed for "." (a line forged by a newline in a file name)
    parts = path[len(_PREFIX) :].split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    fd = os.dup(top_fd)
    try:
        for part in parts[:-1]:
            child = open_dir(part, fd)  # O_NOFOLLOW | O_DIRECTORY: a symlink is refused, not followed
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            return None
        return _first_lines(file_fd, upto)
    except OSError:
        return None
    finally:
        os.close(file_fd)


def _first_lines(fd: int, upto: int) -> list[bytes]:
    """The first `upto` lines of the open file, reading no further than needed nor past MAX_FILE_BYTES."""
    chunks: list[bytes] = []
    size = newlines = 0
    while newlines < upto and size < MAX_FILE_BYTES:
        chunk = os.read(fd, min(_CHUNK, MAX_FILE_BYTES - size))
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        size += len(chunk)
        chunks.append(chunk)
    else:
        if newlines < upto:
            # Cut by the byte bound: the last line read may be incomplete, so it is not one to check.
            return b"".join(chunks).split(b"\n", upto)[:-1]
    # At most `upto` splits: the lines past the last one asked about are never cut into objects.
    raw_lines = b"".join(chunks).split(b"\n", upto)
    if len(raw_lines) > upto or raw_lines[-1] == b"":
        raw_lines.pop()  # the rest of the file, or the empty string after its final newline
    return raw_lines
