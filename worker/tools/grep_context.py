"""Grep with context lines, for a note's `[dirs:PATH]` sections: the argv for ripgrep and GNU grep, the
parser for what they print, the Python fallback, and the budget that keeps a note's share bounded.

With `--null` both tools print a match as `path\\0N:text`, a context line as `path\\0N-text`, and `--`
between groups that are not adjacent; the parser reads both kinds into one stream of `GrepLine`s, which
`take` cuts to a number of matches and bytes without ever keeping a context line whose match was cut.
The Python fallback walks the tree through `worker.tools.fswalk` (no symlink followed, bounded) and
yields the same stream, within a wall-clock budget and reading no more matches than the note can show.
All three skip hidden names and binary files, as `worker.tools.dirgrep` does. What rg and grep print is
not trusted as it is: `worker.tools.grep_verify` checks each line against the file, with `clean_line`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from worker.tools.fswalk import WalkState, walk_files
from worker.tools.lines import matching_lines

#: Characters of one grep line kept (a minified file's single line must not fill the note).
MAX_LINE_CHARS = 300
#: The Python fallback reads files up to this size (rg and grep have no such bound).
MAX_FILE_BYTES = 8 * 1024 * 1024
#: What a kept line costs against the byte budget beside its text (path and number, as printed).
_LINE_OVERHEAD = 8


@dataclass(frozen=True, slots=True)
class GrepLine:
    """One printed line: the file (relative to the searched directory), its number, its text, and whether
    it matched (else it is context)."""

    path: str
    line: int
    text: str
    match: bool


@dataclass
class PythonBudget:
    """What bounds one Python search besides the walk: a wall-clock budget (`clock() >= deadline` stops it,
    checked between files and between patterns: one `finditer` cannot be interrupted) and the matches the
    note can show (`max_matches`: more are never collected from one file). `timed_out` says it stopped."""

    deadline: float
    clock: Callable[[], float]
    max_matches: int
    yielded: int = 0  # matches handed out so far
    timed_out: bool = field(default=False)

    def out_of_time(self) -> bool:
        if not self.timed_out and self.clock() >= self.deadline:
            self.timed_out = True
        return self.timed_out


def argv(tool: str, patterns: Sequence[str], context_lines: int, top: str = ".") -> list[str]:
    """The command line searching `top` (by default the current directory) for any of `patterns`,
    `context_lines` around each.

    Run it in the directory: grep's --exclude-dir also applies to every suffix of a path it is given, so
    a hidden component anywhere in it (".config/x") would hide the whole tree; "." is never excluded.
    (`top` is something else only to ask a tool whether it accepts a pattern, on /dev/null.)"""
    if tool == "rg":
        return [
            *("rg", "--no-heading", "--line-number", "--with-filename", "--null", "--color", "never"),
            # --no-config: RIPGREP_CONFIG_PATH must not slip in flags such as --pre (a command per file).
            # --sort path: one thread, but the same budget picks the same lines every time.
            *("--no-config", "--no-ignore", "--no-messages", "--max-columns", "0", "--sort", "path"),
            # --encoding none: no UTF-16 transcoding (a file with NULs is binary, as for grep and Python),
            # so every line printed is the file's own bytes and can be checked against it.
            *("--encoding", "none"),
            *("-C", str(context_lines)),
            *(arg for pattern in patterns for arg in ("-e", pattern)),
            *("--", top),
        ]
    if tool == "grep":
        # grep -P takes one pattern only (GNU grep 3.8): join them as alternatives.
        joined = patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)
        return [
            *("grep", "-rnHIPs", "--null", "--exclude=.*", "--exclude-dir=.?*"),
            *("-C", str(context_lines), "-e", joined, "--", top),
        ]
    raise ValueError(f"unknown directory grep tool {tool!r}")


def parse(output: bytes) -> Iterator[GrepLine]:
    """The lines of rg's or grep's `--null` output for a search of ".", paths as printed ("./a.txt"):
    `worker.tools.grep_verify.verify` checks them and makes them relative. (A path printed without the
    "./" is a line forged by a newline in a file name, which only the verifier can tell.)"""
    for raw in output.split(b"\n"):
        path, sep, rest = raw.partition(b"\0")
        if not sep:
            continue  # "--" between groups, or a line cut by the output cap
        digits = len(rest) - len(rest.lstrip(b"0123456789"))
        kind = rest[digits : digits + 1]
        if not digits or kind not in (b":", b"-"):
            continue
        yield GrepLine(os.fsdecode(path), int(rest[:digits]), clean_line(rest[digits + 1 :]), kind == b":")


def clean_line(raw: bytes) -> str:
    """One line's bytes (without its "\\n") as the notes show it: UTF-8 (bad bytes replaced), no final
    "\\r", at most MAX_LINE_CHARS characters. The verifier cleans the file's line the same way."""
    return raw.decode("utf-8", "replace").removesuffix("\r")[:MAX_LINE_CHARS]


def take(
    lines: Iterable[GrepLine],
    *,
    max_matches: int,
    max_bytes: int,
    context_lines: int,
    count_all: bool = True,
) -> tuple[list[GrepLine], int, bool]:
    """The first lines of `lines` that fit in `max_matches` matches and `max_bytes` of text, the matches
    found, and whether anything was cut. A context line is kept only with a kept match: when a match does
    not fit, the context printed before it (and not after the previous kept match) goes too. With
    `count_all` off, `lines` is not read past the first match that does not fit (the Python fallback
    reads files to produce them: counting every match would read the whole tree)."""
    kept: list[GrepLine] = []
    matches = used = 0
    total = 0
    full = False
    last: GrepLine | None = None  # the last kept match
    for line in lines:
        total += line.match
        if full:
            continue
        cost = len(line.text) + _LINE_OVERHEAD
        if used + cost > max_bytes or (line.match and matches >= max_matches):
            full = True
            while kept and not kept[-1].match and not _follows(kept[-1], last, context_lines):
                used -= len(kept.pop().text) + _LINE_OVERHEAD
            if not count_all:
                break
            continue
        kept.append(line)
        used += cost
        if line.match:
            matches += 1
            last = line
    return kept, total, full


def line_cost(line: GrepLine) -> int:
    """What `line` costs against a byte budget: its text and the path and number printed with it."""
    return len(line.text) + _LINE_OVERHEAD


def _follows(line: GrepLine, match: GrepLine | None, context_lines: int) -> bool:
    """Whether `line` is after-context of `match`."""
    return match is not None and line.path == match.path and 0 < line.line - match.line <= context_lines


def python(
    patterns: Sequence[str], top_fd: int, context_lines: int, state: WalkState, budget: PythonBudget
) -> Iterator[GrepLine]:
    """The Python fallback: search the tree below `top_fd` (never through a symlink) line by line, until
    the walk's bounds or the `budget` stop it."""
    compiled = [re.compile(p, re.MULTILINE) for p in patterns]
    for rel, entry, dir_fd in walk_files(top_fd, state, prune=_hidden):
        if budget.out_of_time():
            return
        if not entry.name.startswith("."):
            yield from _grep_file(rel, entry.name, dir_fd, compiled, context_lines, budget)


def _hidden(rel: str) -> bool:
    return rel.rsplit("/", 1)[-1].startswith(".")


def _grep_file(
    rel: str,
    name: str,
    dir_fd: int,
    compiled: list[re.Pattern[str]],
    context_lines: int,
    budget: PythonBudget,
) -> Iterator[GrepLine]:
    data = _read_regular(name, dir_fd)
    if data is None or b"\0" in data[:8192]:
        return  # unreadable, not a regular file, too large, or binary (as rg and grep -I skip it)
    text = data.decode("utf-8", "replace")
    # One past what the note can still show, so that `take` sees the budget is full: a file matching on
    # every line must not have all of its lines listed first. The first `room` lines of the union are
    # among the first `room` of the pattern that matched each, so the cut is exact.
    room = max(0, budget.max_matches - budget.yielded) + 1
    found: set[int] = set()
    for regex in compiled:
        if budget.out_of_time():
            break  # what the patterns before found is still shown
        found.update(line for line, _, _ in matching_lines(regex, text, room))
    hits = sorted(found)[:room]
    if not hits:
        return
    budget.yielded += len(hits)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    wanted: dict[int, bool] = {}
    for hit in hits:
        for n in range(max(1, hit - context_lines), min(len(lines), hit + context_lines) + 1):
            wanted.setdefault(n, False)
        wanted[hit] = True
    for n in sorted(wanted):
        yield GrepLine(rel, n, lines[n - 1].removesuffix("\r")[:MAX_LINE_CHARS], wanted[n])


def _read_regular(name: str, dir_fd: int) -> bytes | None:
    """The file's bytes, opened as the pipeline opens inputs (never through a symlink, never blocking on a
    FIFO), or None for anything but a regular file of at most MAX_FILE_BYTES."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            return None
        return os.read(fd, MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError:
        return None
    finally:
        os.close(fd)
