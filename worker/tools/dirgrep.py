"""Directory grep (the seed design's `grepDirectory`): which files in a directory match a rule, and where.

Tools are tried in order: ripgrep, then GNU grep (`-P`, the Perl syntax closest to Python's), then Python
`re` as the last resort, which is always there. A tool is skipped when it is missing (said once per
worker), when its circuit breaker is open, or when it fails on this search; the result says which tool
answered and why the ones before it did not, and the pipeline puts that in the record's `recovery`.

Every tool is held to the same view of the directory: recursive, hidden names (temp files, `.git`)
skipped, binary files skipped, `.gitignore` not honoured (a bucket is not a repository), at most
`MAX_MATCHES` lines. Results are cached per (regex, directory) for `cache_s`, so a burst of files landing
in one directory runs one search, not one per file.

`search_context` (a note's `[dirs:PATH]` sections, whose patterns and files are the bucket's, so hostile)
holds the tools tighter. They run in the directory already opened and checked, by descriptor
(`/proc/self/fd/N`), never by a path that could be swapped meanwhile, and every line they print is checked
against the file below that descriptor (`worker.tools.grep_verify`). A pattern a tool rejects as bad
syntax is not the tool failing (its breaker, shared with skills and other rules, is not charged); one
that every tool tried rejects is left out with a notice, never handed to Python, whose backtracking
cannot be interrupted. Python runs only when the tools are missing, failing or their breakers open, and
then within `python_budget_s` of wall time. (`search` runs the same way and its lines are checked too.)

Past 400 lines on purpose: one chain of tools, with its breakers, its probing of rejected patterns and
its checks, serves both searches; the parsing, the budget and the checks live in `grep_context` and
`grep_verify`.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from loguru import logger

from worker.tools import grep_context, grep_verify
from worker.tools.breaker import Breakers
from worker.tools.command import CommandResult, ToolMissing, run_command
from worker.tools.fswalk import WalkState
from worker.tools.grep_context import GrepLine, clean_line
from worker.tools.lines import matching_lines

__all__ = ["ContextResult", "DirMatch", "DirResult", "DirectoryGrep", "matching_lines"]

_T = TypeVar("_T")

#: Matching lines kept per search (the rest are not listed).
MAX_MATCHES = 200
MAX_LINE_CHARS = 200
#: How long one search's answer is reused for other files of the same directory.
CACHE_S = 10.0
_TIMEOUT_S = 20.0
_MAX_OUTPUT = 4 * 1024 * 1024
_MAX_FILE_BYTES = 8 * 1024 * 1024  # the Python fallback reads files up to this size
#: Wall time one Python context search may take (checked between files and between patterns).
PYTHON_BUDGET_S = 5.0
#: How long asking a tool whether it accepts a pattern (on /dev/null) may take.
_PROBE_TIMEOUT_S = 5.0
#: Characters of a rejected pattern quoted in a notice.
_PATTERN_CHARS = 200
_reported_missing: set[str] = set()


@dataclass(frozen=True, slots=True)
class DirMatch:
    """A matching line: the file (relative to the searched directory), its line number and text."""

    path: str
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class DirResult:
    """One search: its matches, the tool that answered, and why earlier tools did not ("" if none)."""

    matches: tuple[DirMatch, ...]
    tool: str
    fallback_reason: str


@dataclass(frozen=True, slots=True)
class ContextResult:
    """A search with context lines: the lines kept (matches and their context, in order), every match
    found, whether the search saw everything (False: a bound or the output cap cut it short), the tool
    that answered and why earlier ones did not ("" if none)."""

    lines: tuple[GrepLine, ...]
    matches: int
    complete: bool
    tool: str  # "" when nothing was searched (every pattern rejected)
    fallback_reason: str
    notices: tuple[str, ...] = ()  # what the note and the record should say: lines dropped, patterns left out


@dataclass(frozen=True, slots=True)
class _Answer:
    """One tool's answer to a context search, before it becomes a ContextResult."""

    lines: list[GrepLine]
    total: int
    partial: bool
    notices: list[str]


class PatternRejected(Exception):
    """rg or grep refused some patterns as bad syntax: the tool works, the patterns do not."""

    def __init__(self, tool: str, rejected: dict[str, str]) -> None:
        super().__init__(f"rejected {len(rejected)} pattern{'s' if len(rejected) != 1 else ''} as bad syntax")
        self.tool = tool
        self.rejected = rejected  # pattern -> the tool's message


class _AllRejected(Exception):
    """Every tool that ran rejected some patterns (by tool: pattern -> message); Python was not run."""

    def __init__(self, by_tool: dict[str, dict[str, str]]) -> None:
        super().__init__("patterns rejected")
        self.by_tool = by_tool


class DirectoryGrep:
    """Searches directories with the first tool that works, remembering answers for `cache_s`."""

    def __init__(
        self,
        breakers: Breakers,
        *,
        tools: Sequence[str] = ("rg", "grep", "python"),
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        python_budget_s: float = PYTHON_BUDGET_S,
    ) -> None:
        self._breakers = breakers
        self._python_budget_s = python_budget_s
        self._env = env  # None: the worker's own (its PATH finds the tools)
        self._tools = tuple(tools)
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, DirResult]] = {}

    def search(self, regex: str, directory: str) -> DirResult:
        """Lines matching `regex` (Python syntax, multi-line anchors) under `directory`."""
        key = (regex, directory)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        result = self._search(regex, directory)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (now + self._cache_s, result)
        return result

    def _search(self, regex: str, directory: str) -> DirResult:
        matches, tool, reason = self._chain(
            lambda tool: _external(tool, regex, directory, self._env), lambda: _python(regex, directory)
        )
        return DirResult(matches, tool, reason)

    def search_context(
        self,
        patterns: Sequence[str],
        top_fd: int,
        *,
        context_lines: int,
        max_matches: int,
        max_bytes: int,
    ) -> ContextResult:
        """Lines matching any of `patterns` in the directory open as `top_fd` and below, with
        `context_lines` around each, cut to `max_matches` and `max_bytes`. Not cached here: the caller
        (`worker.pipeline.context`) caches whole sections. Patterns that every tool tried rejects are left
        out (a notice each); the rest are searched."""
        active = list(patterns)
        notices: list[str] = []
        # Each round leaves out at least one pattern, so this ends; normally it runs once.
        while active:
            args = (active, top_fd, context_lines, max_matches, max_bytes)
            try:
                answer, tool, reason = self._chain(
                    functools.partial(self._context_once, *args),
                    functools.partial(self._context_python, *args),
                )
            except _AllRejected as exc:
                skip = _to_skip(active, exc.by_tool)
                notices += [_rejected_notice(p, exc.by_tool) for p in active if p in skip]
                active = [p for p in active if p not in skip]
                continue
            everything = (*notices, *answer.notices)
            return ContextResult(
                tuple(answer.lines), answer.total, not answer.partial, tool, reason, everything
            )
        return ContextResult((), 0, True, "", "", tuple(notices))

    def _context_once(
        self,
        patterns: Sequence[str],
        top_fd: int,
        context_lines: int,
        max_matches: int,
        max_bytes: int,
        tool: str,
    ) -> _Answer:
        """One search of `patterns` by rg or grep, its lines checked against the files."""
        # Popen changes into `cwd` in the child, after the fork and before exec: /proc/self/fd/N is then the
        # child's copy of our descriptor (O_CLOEXEC closes it only at exec), so the tool starts in the very
        # directory open_inside checked, even if its path now names a symlink.
        result = run_command(
            grep_context.argv(tool, patterns, context_lines),
            timeout_s=_TIMEOUT_S,
            max_output_bytes=_MAX_OUTPUT,
            cwd=f"/proc/self/fd/{top_fd}",
            env=self._env,
        )
        if _maybe_syntax(result):
            raise PatternRejected(tool, self._rejected(tool, patterns, result))
        _check(result)
        kept, total, _ = grep_context.take(
            grep_context.parse(result.stdout),
            max_matches=max_matches,
            max_bytes=max_bytes,
            context_lines=context_lines,
        )
        checked, dropped = grep_verify.verify(kept, top_fd, context_lines)
        notices = []
        if dropped:
            lines = "line" if dropped == 1 else "lines"
            why = "their file changed or is not a regular file inside the bucket"
            notices.append(f"{dropped:,} grep {lines} dropped: {why}")
            # Some printed lines were not the bucket's: the matches past the budget, never checked, may not
            # be either, so only the checked ones are counted, as a lower bound (a count of lines outside
            # the bucket would leak something about them).
            total = sum(line.match for line in checked)
        return _Answer(checked, total, result.truncated or bool(dropped), notices)

    def _context_python(
        self, patterns: Sequence[str], top_fd: int, context_lines: int, max_matches: int, max_bytes: int
    ) -> _Answer:
        """The Python fallback: it walks `top_fd` itself (nothing to check), within its time budget."""
        state = WalkState()
        budget = grep_context.PythonBudget(self._clock() + self._python_budget_s, self._clock, max_matches)
        kept, total, cut = grep_context.take(
            grep_context.python(patterns, top_fd, context_lines, state, budget),
            max_matches=max_matches,
            max_bytes=max_bytes,
            context_lines=context_lines,
            count_all=False,
        )
        notices = []
        if budget.timed_out:
            notices.append(
                f"the Python search stopped after {self._python_budget_s:g} s: there may be more matches"
            )
        # Python stops reading at the first match past the budget: its count is then a lower bound.
        return _Answer(kept, total, cut or state.stopped or budget.timed_out, notices)

    def _rejected(self, tool: str, patterns: Sequence[str], result: CommandResult) -> dict[str, str]:
        """Which of `patterns` `tool` rejects as bad syntax, with its message, asked on /dev/null (halving
        the set: a few bad patterns among many cost a few runs). Raises _ToolFailed when the tool fails
        on a plain pattern too, or accepts each one: then it is broken, not the patterns."""
        control = self._probe(tool, ["x"])
        if control is not None:
            raise _ToolFailed(f"exited with {result.exit_code}: {result.stderr_tail.strip()[-200:]}")
        found: dict[str, str] = {}
        pending = [list(patterns)]
        while pending:
            group = pending.pop()
            message = self._probe(tool, group)
            if message is None:
                continue
            if len(group) == 1:
                found[group[0]] = message
            else:
                half = len(group) // 2
                pending += [group[half:], group[:half]]
        if not found:
            # The tool works (the control passed) and takes each pattern alone, but not these together
            # (rg's compiled-size limit over all `-e`s) or not on this data (PCRE's backtracking limit):
            # the patterns' doing, never a failure to charge the tool's breaker with (a rules file could
            # then open it for every skill and bucket), and nothing to hand to Python either.
            lines = [line.strip() for line in result.stderr_tail.splitlines() if line.strip()]
            why = (lines[-1] if lines else f"exited with {result.exit_code}").removeprefix(f"{tool}: ")[:200]
            found = {pattern: f"rejected together with the others: {why}" for pattern in patterns}
        return found

    def _probe(self, tool: str, patterns: Sequence[str]) -> str | None:
        """Why `tool` rejects `patterns` (its last line of stderr), or None when it accepts them."""
        result = run_command(
            grep_context.argv(tool, patterns, 0, top="/dev/null"),
            timeout_s=_PROBE_TIMEOUT_S,
            max_output_bytes=_MAX_OUTPUT,
            env=self._env,
        )
        if result.timed_out:  # on an empty input: the tool is in trouble, whatever the pattern
            raise _ToolFailed("timed out checking its patterns")
        if result.exit_code in (0, 1):
            return None
        lines = [line.strip() for line in result.stderr_tail.splitlines() if line.strip()]
        return (lines[-1] if lines else f"exited with {result.exit_code}").removeprefix(f"{tool}: ")[:200]

    def _chain(self, external: Callable[[str], _T], python: Callable[[], _T]) -> tuple[_T, str, str]:
        """The first tool's answer, which tool gave it, and why the ones before it did not."""
        reasons: list[str] = []
        rejected: dict[str, dict[str, str]] = {}
        for tool in self._tools:
            if tool == "python":
                if rejected:
                    # A tool refused these patterns: Python, which accepts more, is not handed them (one
                    # that backtracks catastrophically would hold the worker to the job's deadline).
                    raise _AllRejected(rejected)
                return python(), "python", "; ".join(reasons)
            breaker = self._breakers.for_tool(tool)
            if not breaker.allow():
                reasons.append(f"{tool}: circuit breaker open")
                continue
            try:
                answer = external(tool)
            except PatternRejected as exc:
                breaker.success()  # the tool ran and answered: the patterns are at fault, not it
                rejected[tool] = exc.rejected
                reasons.append(f"{tool}: {exc}")
                continue
            except ToolMissing as exc:
                breaker.success()  # nothing failed: there is no tool
                if tool not in _reported_missing:
                    _reported_missing.add(tool)
                    logger.warning("{} is not available ({}); directory grep falls back", tool, exc.strerror)
                reasons.append(f"{tool}: not installed")
                continue
            except Exception as exc:  # it failed (_ToolFailed), or could not be started (EAGAIN, fds)
                breaker.failure()  # always reported: a probe that raised would hold the breaker half-open
                reasons.append(f"{tool}: {exc}")
                continue
            breaker.success()
            return answer, tool, "; ".join(reasons)
        if rejected:
            raise _AllRejected(rejected)
        raise RuntimeError("no directory grep tool configured")  # "python" ends every real chain


class _ToolFailed(Exception):
    pass


def _external(tool: str, regex: str, directory: str, env: Mapping[str, str] | None) -> tuple[DirMatch, ...]:
    if tool == "rg":
        argv = [
            *("rg", "--no-heading", "--line-number", "--with-filename", "--null", "--color", "never"),
            # --no-config: RIPGREP_CONFIG_PATH must not slip in flags such as --pre (a command per file).
            *("--no-config", "--no-ignore", "--no-messages", "--max-columns", "0", "--encoding", "none"),
            *("-e", regex, "--", "."),
        ]
    elif tool == "grep":
        argv = ["grep", "-rnHIPs", "--null", "--exclude=.*", "--exclude-dir=.?*", "-e", regex, "--", "."]
    else:
        raise ToolMissing(2, "unknown directory grep tool", tool)
    # Run in the directory, searching ".": grep's --exclude-dir also matches the components of a path it is
    # given, so a bucket under a hidden directory (~/.local/inbox) would have had every file skipped. And
    # run in it by descriptor, with every printed line checked against the file below that descriptor, as
    # `search_context` does (see `grep_verify`): ripgrep follows a file swapped for a symlink mid-search.
    top_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        result = run_command(
            argv, timeout_s=_TIMEOUT_S, max_output_bytes=_MAX_OUTPUT, cwd=f"/proc/self/fd/{top_fd}", env=env
        )
        _check(result)
        # Only what can be shown is checked (each check may read a file of up to 8 MiB).
        printed = [GrepLine(m.path, m.line, m.text, True) for m in _parse(result.stdout)[:MAX_MATCHES]]
        checked, _ = grep_verify.verify(printed, top_fd, 0)
    finally:
        os.close(top_fd)
    return tuple(DirMatch(g.path, g.line, g.text[:MAX_LINE_CHARS]) for g in checked[:MAX_MATCHES])


def _maybe_syntax(result: CommandResult) -> bool:
    """Whether rg or grep may have refused a pattern: both then exit 2 at once, with a message and no
    output. (Which one, if any, is asked of the tool itself: their messages differ by tool, version and
    locale.)"""
    return (
        result.exit_code == 2
        and not result.stdout
        and not result.timed_out
        and not result.truncated
        and bool(result.stderr_tail.strip())
    )


def _to_skip(active: Sequence[str], by_tool: dict[str, dict[str, str]]) -> set[str]:
    """The patterns to leave out: those every rejecting tool rejects; else (each tool rejects a different
    one, so none can search them all) every pattern some tool rejects."""
    every = {p for p in active if all(p in bad for bad in by_tool.values())}
    return every or {p for p in active if any(p in bad for bad in by_tool.values())}


def _rejected_notice(pattern: str, by_tool: dict[str, dict[str, str]]) -> str:
    tools = [tool for tool, bad in by_tool.items() if pattern in bad]
    shown = pattern if len(pattern) <= _PATTERN_CHARS else pattern[: _PATTERN_CHARS - 1] + "…"
    why = by_tool[tools[0]][pattern]
    return f"pattern not searched, rejected by {' and '.join(tools)}: {shown} ({why})"


def _check(result: CommandResult) -> None:
    """Raise `_ToolFailed` unless rg or grep answered. Both exit 1 when nothing matched, and 2 when a file
    could not be read even if others matched (one unreadable file must not fail every search); a full
    output buffer still gives the first matches."""
    partial = result.exit_code == 2 and b"\0" in result.stdout
    if result.timed_out or (result.exit_code not in (0, 1) and not result.truncated and not partial):
        why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
        raise _ToolFailed(f"{why}: {result.stderr_tail.strip()[-200:]}")


def _parse(output: bytes) -> list[DirMatch]:
    """`path\\0line:text` lines, as both tools print them with --null, paths as printed ("./a.txt")."""
    out: list[DirMatch] = []
    for raw in output.split(b"\n"):
        path, sep, rest = raw.partition(b"\0")
        number, colon, text = rest.partition(b":")
        if not sep or not colon or not number.isdigit():
            continue  # a line cut by the output cap, or noise
        out.append(DirMatch(os.fsdecode(path), int(number), clean_line(text)))
    out.sort(key=lambda m: (m.path, m.line))
    return out


def _python(regex: str, directory: str) -> tuple[DirMatch, ...]:
    compiled = re.compile(regex, re.MULTILINE)
    out: list[DirMatch] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            data = _read_regular(os.path.join(root, name))
            if data is None or b"\0" in data[:8192]:
                continue  # unreadable, not a regular file, too large, or binary (as rg and grep -I skip it)
            text = data.decode("utf-8", "replace")
            rel = os.path.relpath(os.path.join(root, name), directory)
            out += [
                DirMatch(rel, line, text[start:end][:MAX_LINE_CHARS])
                for line, start, end in matching_lines(compiled, text, MAX_MATCHES)
            ]
    out.sort(key=lambda m: (m.path, m.line))
    return tuple(out[:MAX_MATCHES])


def _read_regular(path: str) -> bytes | None:
    """The file's bytes, opened as the pipeline opens inputs (never through a symlink, never blocking on a
    FIFO), or None for anything but a regular file of at most _MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
            return None
        return os.read(fd, _MAX_FILE_BYTES + 1)[:_MAX_FILE_BYTES]
    except OSError:
        return None
    finally:
        os.close(fd)
