"""Directory grep (the seed design's `grepDirectory`): which files in a directory match a rule, and where.

Tools are tried in order: ripgrep, then GNU grep (`-P`, the Perl syntax closest to Python's), then Python
`re` as the last resort, which is always there. A tool is skipped when it is missing (said once per
worker), when its circuit breaker is open, or when it fails on this search; the result says which tool
answered and why the ones before it did not, and the pipeline puts that in the record's `recovery`.

Every tool is held to the same view of the directory: recursive, hidden names (temp files, `.git`)
skipped, binary files skipped, `.gitignore` not honoured (a bucket is not a repository), at most
`MAX_MATCHES` lines. Results are cached per (regex, directory) for `cache_s`, so a burst of files landing
in one directory runs one search, not one per file.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loguru import logger

from worker.tools.breaker import Breakers
from worker.tools.command import ToolMissing, run_command

#: Matching lines kept per search (the rest are not listed).
MAX_MATCHES = 200
MAX_LINE_CHARS = 200
#: How long one search's answer is reused for other files of the same directory.
CACHE_S = 10.0
_TIMEOUT_S = 20.0
_MAX_OUTPUT = 4 * 1024 * 1024
_MAX_FILE_BYTES = 8 * 1024 * 1024  # the Python fallback reads files up to this size
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
    ) -> None:
        self._breakers = breakers
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
        reasons: list[str] = []
        for tool in self._tools:
            if tool == "python":
                return DirResult(_python(regex, directory), "python", "; ".join(reasons))
            breaker = self._breakers.for_tool(tool)
            if not breaker.allow():
                reasons.append(f"{tool}: circuit breaker open")
                continue
            try:
                matches = _external(tool, regex, directory, self._env)
            except ToolMissing as exc:
                breaker.success()  # nothing failed: there is no tool
                if tool not in _reported_missing:
                    _reported_missing.add(tool)
                    logger.warning("{} is not available ({}); directory grep falls back", tool, exc.strerror)
                reasons.append(f"{tool}: not installed")
                continue
            except _ToolFailed as exc:
                breaker.failure()
                reasons.append(f"{tool}: {exc}")
                continue
            breaker.success()
            return DirResult(matches, tool, "; ".join(reasons))
        raise RuntimeError("no directory grep tool configured")  # "python" ends every real chain


class _ToolFailed(Exception):
    pass


def _external(tool: str, regex: str, directory: str, env: Mapping[str, str] | None) -> tuple[DirMatch, ...]:
    if tool == "rg":
        argv = [
            *("rg", "--no-heading", "--line-number", "--with-filename", "--null", "--color", "never"),
            # --no-config: RIPGREP_CONFIG_PATH must not slip in flags such as --pre (a command per file).
            *("--no-config", "--no-ignore", "--no-messages", "--max-columns", "0"),
            *("-e", regex, "--", directory),
        ]
    elif tool == "grep":
        argv = ["grep", "-rnHIP", "--null", "--exclude=.*", "--exclude-dir=.*", "-e", regex, "--", directory]
    else:
        raise ToolMissing(2, "unknown directory grep tool", tool)
    result = run_command(argv, timeout_s=_TIMEOUT_S, max_output_bytes=_MAX_OUTPUT, env=env)
    # Both exit 1 when nothing matched; a full output buffer still gives the first matches.
    if result.timed_out or (result.exit_code not in (0, 1) and not result.truncated):
        why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
        raise _ToolFailed(f"{why}: {result.stderr_tail.strip()[-200:]}")
    return _parse(result.stdout, directory)


def _parse(output: bytes, directory: str) -> tuple[DirMatch, ...]:
    """`path\\0line:text` lines, as both tools print them with --null."""
    out: list[DirMatch] = []
    prefix = directory.rstrip("/") + "/"
    for raw in output.split(b"\n"):
        path, sep, rest = raw.partition(b"\0")
        number, colon, text = rest.partition(b":")
        if not sep or not colon or not number.isdigit():
            continue  # a line cut by the output cap, or noise
        name = os.fsdecode(path)
        out.append(
            DirMatch(name.removeprefix(prefix), int(number), text.decode("utf-8", "replace")[:MAX_LINE_CHARS])
        )
    out.sort(key=lambda m: (m.path, m.line))
    return tuple(out[:MAX_MATCHES])


def _python(regex: str, directory: str) -> tuple[DirMatch, ...]:
    compiled = re.compile(regex, re.MULTILINE)
    out: list[DirMatch] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)  # never follows a symlink, like the tools' defaults
                if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if b"\0" in data[:8192]:
                continue  # binary, as rg and grep -I skip it
            text = data.decode("utf-8", "replace")
            rel = os.path.relpath(path, directory)
            seen: set[int] = set()
            for m in compiled.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                if line in seen:
                    continue
                seen.add(line)
                start = text.rfind("\n", 0, m.start()) + 1
                end = text.find("\n", m.start())
                out.append(DirMatch(rel, line, text[start : len(text) if end < 0 else end][:MAX_LINE_CHARS]))
    out.sort(key=lambda m: (m.path, m.line))
    return tuple(out[:MAX_MATCHES])
