"""A note's context from its `.bucket-include` rules: the bucket's related files and the `[dirs:PATH]`
grep sections, computed once per burst.

The coordinator parses and merges the rules and sends them with each job (`ContextRules`); this module
walks the bucket for the files the includes (minus the excludes) name, and greps each `[dirs:PATH]`
directory through `worker.tools.dirgrep` (ripgrep, GNU grep, Python). Both read whole directories, so a
`ContextCollector` (one per worker) keeps each part for `notes.context_cache_s`, keyed by (bucket root,
rules key, part): a burst of a thousand drops into one bucket costs one walk and one search per worker,
and `ContextFacts.scanned` is true only for the job that paid for them. The cache is emptied when the
note settings change (a new CONFIG), and a file that lands during the window shows up once it expires.

Safety: the walk never follows a symlink (`worker.tools.fswalk`), and a `[dirs:PATH]` is searched only
when every component of PATH opens from the bucket root with `O_NOFOLLOW | O_DIRECTORY` (no symlink,
no "..", nothing absolute). That descriptor is what is searched: ripgrep and grep start in it (not in
PATH, which may be swapped for a symlink meanwhile) and every line they print is checked against the file
below it (`worker.tools.grep_verify`); the Python fallback walks it itself.

The cache is bounded by the entries it holds (files listed, grep lines), not only by the parts: a part of
100,000 files weighs some 30 MB.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from protocol.globs import glob_regex
from protocol.messages import ContextFacts, ContextRules, DirsRule, NoteSettings, Recovery
from worker.tools import grep_context
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep
from worker.tools.fswalk import MAX_DEPTH, MAX_ENTRIES, WalkState, open_dir, walk_files
from worker.tools.grep_context import GrepLine

#: Cached parts kept at most, and entries (related files and grep lines) in all of them; past either the
#: oldest parts are dropped (many buckets times many rule sets, each up to fswalk.MAX_ENTRIES files).
MAX_CACHED = 256
MAX_CACHED_ENTRIES = 200_000
#: Problems carried in the facts (the protocol allows 32) and the characters of each.
_MAX_PROBLEMS = 32
_MAX_PROBLEM_CHARS = 1024


@dataclass(frozen=True, slots=True)
class RelatedScan:
    """One walk of a bucket: every related file with its size, sorted by path, and why it stopped early."""

    files: tuple[tuple[str, int], ...]
    sizes: dict[str, int]
    total_bytes: int
    bound: str  # "" when the whole bucket was seen
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RelatedView:
    """A note's Related Context: the count and size without the note's own file, the first ones listed."""

    count: int
    total_bytes: int
    listed: list[tuple[str, int]]
    bound: str


@dataclass(frozen=True, slots=True)
class GrepSection:
    """One `[dirs:PATH]` section: what was searched, the lines kept (paths relative to the bucket root),
    every match found, and why it was not searched or not wholly ("" when it was)."""

    path: str
    patterns: tuple[str, ...]
    lines: tuple[GrepLine, ...] = ()
    matches: int = 0
    complete: bool = True
    tool: str = ""
    fallback_reason: str = ""
    problem: str = ""  # set: not searched, and why
    kept_bytes: int = 0  # what `lines` cost against the note's byte budget
    notices: tuple[str, ...] = ()  # searched, but: lines dropped, patterns left out, a budget hit


@dataclass(frozen=True, slots=True)
class NoteContext:
    """Everything the note's context sections show, and the facts the record gets."""

    related: RelatedView | None  # None: no include rules
    greps: list[GrepSection]  # cut to the note's grep budget
    grep_cut: bool  # the budget (matches or bytes) left something out
    facts: ContextFacts
    recovery: Recovery | None = None  # a section was answered by a fallback tool, and why
    settings: NoteSettings = field(default_factory=NoteSettings)


class ContextCollector:
    """Per worker: computes a note's context, keeping each part for `notes.context_cache_s` seconds."""

    def __init__(
        self,
        dirgrep: DirectoryGrep | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
        max_depth: int = MAX_DEPTH,
        max_cached_entries: int = MAX_CACHED_ENTRIES,
    ) -> None:
        self._dirgrep = dirgrep or DirectoryGrep(Breakers())
        self._clock = clock
        self._max_entries = max_entries
        self._max_depth = max_depth
        # Insertion order is age order: a part computed again is deleted and inserted anew.
        self._cache: dict[tuple[str, str, str], tuple[float, RelatedScan | GrepSection]] = {}
        self._cached_entries = 0  # the weight of everything in _cache
        self._max_cached_entries = max_cached_entries
        self._settings: NoteSettings | None = None

    def collect(self, root: str, relpath: str, rules: ContextRules, notes: NoteSettings) -> NoteContext:
        """The context of the file at `relpath` in the bucket at `root`, under `rules`."""
        if notes != self._settings:
            self._cache.clear()  # caps and context lines shaped what is cached
            self._cached_entries = 0
            self._settings = notes
        fresh = False
        problems: list[str] = []
        related: RelatedView | None = None
        if rules.includes:
            scan, new = self._cached((root, rules.key, "related"), lambda: self._walk(root, rules))
            fresh |= new
            assert isinstance(scan, RelatedScan)
            related = _view(scan, relpath, notes.related_listed)
            problems += scan.problems
        sections: list[GrepSection] = []
        for rule in rules.dirs:
            section, new = self._cached(
                (root, rules.key, "dirs:" + rule.path), functools.partial(self._grep, root, rule, notes)
            )
            fresh |= new
            assert isinstance(section, GrepSection)
            sections.append(section)
            if section.problem:
                problems.append(f"[dirs:{rule.path}] not searched: {section.problem}")
            problems += [f"[dirs:{rule.path}] {notice}" for notice in section.notices]
        shown, cut = _budget(sections, notes)
        searched = [s for s in sections if not s.problem]
        # The weakest tool that answered: a note half answered by Python says so.
        tools = [s.tool for s in searched]
        tool = next((t for t in ("python", "grep", "rg") if t in tools), None)
        fallback = next((s for s in searched if s.fallback_reason), None)
        facts = ContextFacts(
            related_files=related.count if related else 0,
            related_bytes=related.total_bytes if related else 0,
            grep_dirs=len(searched),
            grep_matches=sum(s.matches for s in searched),
            grep_tool=tool,
            scanned=fresh,
            problems=[_wire_safe(p)[:_MAX_PROBLEM_CHARS] for p in problems[:_MAX_PROBLEMS]],
        )
        recovery = Recovery(fallback=fallback.tool, reason=fallback.fallback_reason) if fallback else None
        return NoteContext(related, shown, cut, facts, recovery, notes)

    def _cached(
        self, key: tuple[str, str, str], compute: Callable[[], RelatedScan | GrepSection]
    ) -> tuple[RelatedScan | GrepSection, bool]:
        """The part under `key`, and whether it was computed now."""
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], False
        value = compute()
        ttl = self._settings.context_cache_s if self._settings else 0.0
        weight = _weight(value)
        if hit is not None:
            del self._cache[key]
            self._cached_entries -= _weight(hit[1])
        if ttl > 0 and weight <= self._max_cached_entries:
            while self._cache and (
                len(self._cache) >= MAX_CACHED or self._cached_entries + weight > self._max_cached_entries
            ):
                _, old = self._cache.pop(next(iter(self._cache)))  # the oldest
                self._cached_entries -= _weight(old)
            # From when the part was computed: a slow walk must not make the next job walk again at once.
            self._cache[key] = (self._clock() + ttl, value)
            self._cached_entries += weight
        return value, True

    # -- related files -----------------------------------------------------------------------------------

    def _walk(self, root: str, rules: ContextRules) -> RelatedScan:
        include = _union(rules.includes)
        exclude = _union(rules.excludes)
        # A pattern naming a directory ("build/", "node_modules/**") excludes everything below it: such a
        # directory is not entered at all. Asked as "dir/", which every such pattern matches.
        dir_exclude = _union([p for p in rules.excludes if p.endswith("/") or p.endswith("/**")])
        state = WalkState(max_entries=self._max_entries, max_depth=self._max_depth)
        found: list[tuple[str, int]] = []
        try:
            top = open_dir(root, follow=True)
        except OSError as exc:
            return RelatedScan((), {}, 0, "", (f"bucket not readable: {exc.strerror or exc}",))
        try:
            prune = (lambda rel: dir_exclude.fullmatch(rel + "/") is not None) if dir_exclude else _never
            for rel, entry, _ in walk_files(top, state, prune):
                if include is None or include.fullmatch(rel) is None:
                    continue
                if exclude is not None and exclude.fullmatch(rel) is not None:
                    continue
                try:
                    found.append((rel, entry.stat(follow_symlinks=False).st_size))
                except OSError:
                    continue  # gone since it was listed
        finally:
            os.close(top)
        found.sort()
        problems = [f"related context: the walk {state.bound}"] if state.bound else []
        if state.unreadable:
            problems.append(
                f"related context: {len(state.unreadable):,} directories not readable "
                f"(first: {state.unreadable[0]})"
            )
        sizes = dict(found)
        return RelatedScan(tuple(found), sizes, sum(sizes.values()), state.bound, tuple(problems))

    # -- grep sections -----------------------------------------------------------------------------------

    def _grep(self, root: str, rule: DirsRule, notes: NoteSettings) -> GrepSection:
        section = GrepSection(rule.path, tuple(rule.patterns))
        if not rule.patterns:
            return replace(section, problem="no patterns")
        fd, why = open_inside(root, rule.path)
        if fd is None:
            return replace(section, problem=why)
        try:
            # The descriptor, not the path: the tools start in it and their lines are checked below it.
            found = self._dirgrep.search_context(
                rule.patterns,
                fd,
                context_lines=notes.grep_context_lines,
                max_matches=notes.grep_max_matches,
                max_bytes=notes.grep_max_bytes,
            )
        finally:
            os.close(fd)
        if not found.tool:
            return replace(section, problem="no pattern that rg or grep accepts", notices=found.notices)
        prefix = _parts(rule.path)
        lines = tuple(
            replace(line, path=posixpath.join(*prefix, line.path)) if prefix else line for line in found.lines
        )
        return replace(
            section,
            lines=lines,
            kept_bytes=sum(grep_context.line_cost(line) for line in lines),
            matches=found.matches,
            complete=found.complete,
            tool=found.tool,
            fallback_reason=found.fallback_reason,
            notices=found.notices,
        )


def open_inside(root: str, path: str) -> tuple[int | None, str]:
    """A descriptor of `path` (relative to the bucket `root`) opened one component at a time with
    `O_NOFOLLOW`, or None and why not: absolute, "..", a symlink, missing or not a directory."""
    if path.startswith("/") or "\0" in path:
        return None, "it is not relative to the bucket"
    if ".." in path.split("/"):
        return None, "it leaves the bucket"
    try:
        fd = open_dir(root, follow=True)
    except OSError as exc:
        return None, f"the bucket is not readable ({exc.strerror or exc})"
    done: list[str] = []
    for part in _parts(path):
        try:
            child = open_dir(part, fd)
        except OSError as exc:
            why = _why_not_dir(fd, part, exc)
            os.close(fd)
            return None, f"{'/'.join([*done, part])} {why}"
        os.close(fd)
        fd = child
        done.append(part)
    return fd, ""


def _why_not_dir(dir_fd: int, name: str, exc: OSError) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return "does not exist"
    except OSError:
        return f"cannot be opened ({exc.strerror or exc})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "is not readable"
    return f"cannot be opened ({exc.strerror or exc})"


def _weight(part: RelatedScan | GrepSection) -> int:
    """What a cached part counts against MAX_CACHED_ENTRIES: its files or lines (at least 1)."""
    return max(1, len(part.files) if isinstance(part, RelatedScan) else len(part.lines))


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _union(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for any of the globs (invalid ones skipped: the coordinator already reported them)."""
    regexes: list[str] = []
    for pattern in patterns:
        try:
            regexes.append(glob_regex(pattern))
        except ValueError:
            continue
    return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL) if regexes else None


def _wire_safe(text: str) -> str:
    """`text` without lone surrogates (a non-UTF-8 file name), which the RESULT's msgpack cannot carry."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _never(_rel: str) -> bool:
    return False


def _view(scan: RelatedScan, relpath: str, listed: int) -> RelatedView:
    """The scan as one note sees it: without the note's own file."""
    own = scan.sizes.get(relpath)
    shown: list[tuple[str, int]] = []
    for item in scan.files:
        if len(shown) >= listed:
            break
        if item[0] != relpath:
            shown.append(item)
    count = len(scan.files) - (own is not None)
    return RelatedView(count, scan.total_bytes - (own or 0), shown, scan.bound)


def _budget(sections: list[GrepSection], notes: NoteSettings) -> tuple[list[GrepSection], bool]:
    """The sections cut to the note's budget (`grep_max_matches`, `grep_max_bytes`), in order: the first
    sections get their lines first. True when something found was left out."""
    matches_left, bytes_left = notes.grep_max_matches, notes.grep_max_bytes
    out: list[GrepSection] = []
    cut = False
    for section in sections:
        if section.problem:
            out.append(section)
            continue
        held = sum(line.match for line in section.lines)
        if held <= matches_left and section.kept_bytes <= bytes_left:
            # The common case (one section, cached already cut to the same budget): nothing to redo.
            kept, used = list(section.lines), section.kept_bytes
        else:
            kept, _, _ = grep_context.take(
                section.lines,
                max_matches=matches_left,
                max_bytes=bytes_left,
                context_lines=notes.grep_context_lines,
            )
            used = sum(grep_context.line_cost(line) for line in kept)
        shown = sum(line.match for line in kept)
        matches_left -= shown
        bytes_left -= used
        cut |= shown < section.matches
        out.append(replace(section, lines=tuple(kept), kept_bytes=used))
    return out, cut
