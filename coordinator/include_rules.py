"""The `.bucket-include` rules each job is sent with, re-read as soon as a rule file changes.

`protocol.bucket_include` parses and merges; this module finds the files, reads them safely and keeps the
answer while they stay the same. At a dispatch it `stat`s the two to four files that could apply (the
bucket's and the global profile's, per extension and plain) and reuses the merged rules while every one of
them keeps its (inode, size, mtime, ctime); a check stands for `RECHECK_S` (20 ms). So a rule file edited
at run time applies to the next file dispatched, and a burst pays a few `stat`s per 20 ms, not per file.

A bucket's rule files sit where anyone who can drop a file can drop one, so they are read like input:
never through a symlink, never from a FIFO, regular files of at most `MAX_RULE_FILE_BYTES` only. What
cannot be read, or a line that cannot be used, becomes a `Problem`; the coordinator turns the problems of
each version of a rule file into one Configuration ERROR record (`Outcomes.bad_rules`), and the file's
other rules keep working.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from coordinator.config import Config
from coordinator.jobs import Job
from coordinator.queue import JobQueue
from protocol import bucket_include
from protocol.bucket_include import DEFAULT_EXCLUDES, IncludeFile, Problem, Rules
from protocol.messages import ContextRules, DirsRule

#: How long a check of a bucket's rule files stands for the files of one extension. Each check is two to
#: four `stat`s (2-3 µs each here: ~10 µs a dispatch, 5% of the no-op pipeline's coordinator time); a
#: burst then pays them about 50 times a second instead of once a file, and an edit applies to every file
#: dispatched from 20 ms after it (files wait `watcher.settle_s` or more before they are dispatched).
RECHECK_S = 0.02

#: At most this many includes (and excludes), `[dirs:...]` sections, and patterns per section go to a
#: worker (`protocol.messages.ContextRules`' bounds).
MAX_WIRE_RULES = 512
MAX_WIRE_DIRS = 64
MAX_WIRE_PATTERNS = 256
#: Rule files kept parsed (each at most MAX_RULE_FILE_BYTES), and rule files of one directory that
#: CONFIG_DUMP.md lists: a dropper can create many `.{ext}.bucket-include` files.
MAX_PARSED_FILES = 256
MAX_LISTED_FILES = 64

#: Larger rule files are refused whole (a problem, no rules): real ones are a few hundred bytes.
MAX_RULE_FILE_BYTES = 256 * 1024

#: A rule file's identity on disk: (inode, size, mtime_ns, ctime_ns); None when it is not there.
Signature = tuple[int, int, int, int] | None


@dataclass(frozen=True, slots=True)
class Loaded:
    """The rules for one file: merged (with where each came from), their wire form (None: no rule file
    exists, so the note has no context sections), and each existing rule file with its version."""

    rules: Rules
    wire: ContextRules | None
    files: tuple[tuple[str, os.stat_result], ...]


def default_profile() -> str:
    """The global profile's directory from the environment (`XDG_CONFIG_HOME`, else `~/.config`)."""
    return bucket_include.profile_dir(os.environ.get("XDG_CONFIG_HOME"), os.path.expanduser("~"))


class IncludeRules:
    """Rules per (bucket root, extension), re-read when any of their files changes."""

    def __init__(self, profile: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.profile = profile or default_profile()
        self.clock = clock
        self._files: dict[tuple[str, str], list[str]] = {}  # (root, ext) → candidate paths
        self._checked: dict[tuple[str, str], tuple[float, Loaded]] = {}  # (root, ext) → when, what
        self._parsed: dict[str, tuple[Signature, IncludeFile]] = {}
        self._merged: dict[tuple[tuple[str, ...], tuple[Signature, ...]], Loaded] = {}
        self.reads = 0  # rule files read (parsed), for tests and the CONFIG_DUMP

    def candidates(self, bucket_root: str, relpath: str) -> list[str]:
        """The rule files that could apply to `relpath`, most specific first (`bucket_include.rule_files`)."""
        ext = bucket_include.extension(relpath)
        key = (bucket_root, ext)
        found = self._files.get(key)
        if found is None:
            found = bucket_include.rule_files_in(bucket_root, ext, self.profile)
            if len(self._files) > 4096:
                self._files.clear()
            self._files[key] = found
        return found

    def load(self, bucket_root: str, relpath: str) -> Loaded:
        """The merged rules for `relpath` in the bucket at `bucket_root`, checked against the disk at most
        every `RECHECK_S` per bucket and extension."""
        ext = bucket_include.extension(relpath)
        now = self.clock()
        recent = self._checked.get((bucket_root, ext))
        if recent is not None and now - recent[0] < RECHECK_S:
            return recent[1]
        loaded = self.load_now(bucket_root, relpath)
        if len(self._checked) > 4096:
            self._checked.clear()
        self._checked[(bucket_root, ext)] = (now, loaded)
        return loaded

    def load_now(self, bucket_root: str, relpath: str) -> Loaded:
        """`load`, checking every rule file that could apply against the disk now."""
        paths = self.candidates(bucket_root, relpath)
        stats = [_stat(p) for p in paths]
        signatures = tuple(_signature(st) for st in stats)
        key = (tuple(paths), signatures)
        loaded = self._merged.get(key)
        if loaded is not None:
            return loaded
        parsed: list[IncludeFile] = []
        files: list[tuple[str, os.stat_result]] = []
        for path, st, signature in zip(paths, stats, signatures, strict=True):
            if st is None:
                continue
            files.append((path, st))
            cached = self._parsed.get(path)
            if cached is None or cached[0] != signature:
                cached = (signature, self._read(path))
                if len(self._parsed) >= MAX_PARSED_FILES:
                    self._parsed.clear()
                self._parsed[path] = cached
            parsed.append(cached[1])
        rules = bucket_include.merge(parsed)
        loaded = Loaded(rules, _wire(rules) if parsed else None, tuple(files))
        if len(self._merged) > 4096:
            self._merged.clear()
        self._merged[key] = loaded
        return loaded

    def reread(self, path: str) -> list[Problem]:
        """The problems of the rule file at `path` as it is now (for a rules job recorded after a restart)."""
        self._parsed.pop(path, None)
        return self._read(path).problems

    def _read(self, path: str) -> IncludeFile:
        self.reads += 1
        return parse_rule_file(path) or IncludeFile(source=path)  # (None: gone since the stat)


def read_rule_file(path: str) -> str | None:
    """The text of a rule file: None when it is missing; ValueError for a symlink, something that is not a
    regular file, or a file over `MAX_RULE_FILE_BYTES`; UnicodeDecodeError when it is not UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError("a symlink; rule files are never followed") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, MAX_RULE_FILE_BYTES + 1)
        if len(data) > MAX_RULE_FILE_BYTES:
            raise ValueError(f"larger than {MAX_RULE_FILE_BYTES:,} bytes")
        return data.decode("utf-8")
    finally:
        os.close(fd)


def parse_rule_file(path: str) -> IncludeFile | None:
    """The rule file at `path`, parsed (None: missing). Never raises: what cannot be read is a line-0
    problem, and the parser turns every bad line into a problem of its own."""
    try:
        text = read_rule_file(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return IncludeFile(source=path, problems=[Problem(path, 0, "", f"cannot read: {reason}")])
    if text is None:
        return None
    try:
        return bucket_include.parse(text, path)
    except Exception as exc:  # a parser bug must not stop the coordinator (the file is a dropper's)
        logger.opt(exception=exc).error("parsing {} failed", path)
        return IncludeFile(source=path, problems=[Problem(path, 0, "", f"cannot parse: {exc!r}"[:500])])


def problems_by_file(loaded: Loaded) -> dict[str, list[Problem]]:
    """The problems of `loaded`, grouped by the rule file they are in (in lookup order)."""
    out: dict[str, list[Problem]] = {}
    for problem in loaded.rules.problems:
        out.setdefault(problem.source, []).append(problem)
    return out


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)  # a symlink is its own signature: read_rule_file refuses it
    except OSError:
        return None


def _signature(st: os.stat_result | None) -> Signature:
    return None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _wire(rules: Rules) -> ContextRules:
    # Within the wire's bounds whatever the files hold (a frame the worker refuses would fail the job);
    # past them, the most specific rules are the ones kept. The defaults are the last excludes: keep them.
    includes = [r.pattern for r in rules.includes][:MAX_WIRE_RULES]
    excludes = [r.pattern for r in rules.excludes]
    excludes = excludes[: MAX_WIRE_RULES - len(DEFAULT_EXCLUDES)] + list(DEFAULT_EXCLUDES)
    dirs = [
        DirsRule(path=d.path, patterns=[p.pattern for p in d.patterns][:MAX_WIRE_PATTERNS])
        for d in rules.dirs[:MAX_WIRE_DIRS]
    ]
    digest = hashlib.blake2b(digest_size=8)
    for part in (includes, excludes, [(d.path, d.patterns) for d in dirs]):
        digest.update(repr(part).encode("utf-8", "surrogatepass"))
    return ContextRules(key=digest.hexdigest(), includes=includes, excludes=excludes, dirs=dirs)


class JobContexts:
    """What the supervisor asks at dispatch: the `ContextRules` a job goes out with. Rule files with
    problems are queued once per version as jobs of kind "rules" (recorded without a worker as one
    Configuration ERROR each, by `Outcomes.bad_rules`), and the job goes out with the rest of its rules."""

    def __init__(self, config: Config, queue: JobQueue, clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        self.clock = clock
        self.include = IncludeRules(profile_of(config), clock)
        self.roots: dict[str, str] = {}  # bucket name → absolute root
        self.enabled = True
        self.pending: dict[int, list[Problem]] = {}  # rules job id → its problems, until recorded
        self.reconfigure(config)

    def reconfigure(self, config: Config) -> None:
        """Follow a reload: the buckets, whether rules are read, and where the global profile is."""
        self.roots = {b.name: os.path.abspath(b.path.expanduser()) for b in config.buckets}
        self.enabled = config.notes.bucket_include
        profile = profile_of(config)
        if profile != self.include.profile:
            self.include = IncludeRules(profile, self.clock)

    def for_job(self, job: Job) -> ContextRules | None:
        """The rules `job`'s file is sent with (None: no rule file applies, or rules are off)."""
        if not self.enabled:
            return None
        root = self.roots.get(job.bucket)
        if root is None:
            return None
        loaded = self.include.load(root, job.relpath)
        if loaded.rules.problems:
            self._queue_problems(job.bucket, root, loaded)
        return loaded.wire

    def _queue_problems(self, bucket: str, root: str, loaded: Loaded) -> None:
        by_file = problems_by_file(loaded)
        for path, st in loaded.files:
            problems = by_file.get(path)
            if not problems:
                continue
            relpath = rule_relpath(root, path)
            key = (bucket, relpath, st.st_size, st.st_mtime_ns, st.st_ino)
            if self.queue.knows(key):
                continue  # this version is recorded already (or about to be)
            job = self.queue.add(key, path=path, relpath=relpath, output_path="", kind="rules")
            if job is not None:
                self.pending[job.id] = problems
                logger.warning("{} bad line(s) in {}; the rest of its rules apply", len(problems), path)

    def problems_of(self, job: Job) -> list[Problem]:
        """The problems a rules job was queued for; read again when they are not in memory (the job was
        queued before a restart, or an operator retried it)."""
        problems = self.pending.pop(job.id, None)
        if problems is not None:
            return problems
        return self.include.reread(job.path)


def profile_of(config: Config) -> str:
    """The global profile directory `config` names (default: from the environment)."""
    configured = config.notes.global_profile
    return os.path.abspath(configured.expanduser()) if configured is not None else default_profile()


def rule_relpath(root: str, path: str) -> str:
    """How a rule file is named in its job: relative to the bucket when it is the bucket's, else its
    absolute path (the global profile's)."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def owner(roots: dict[str, str], path: str) -> tuple[str, str, str] | None:
    """(bucket, root, relpath) of the deepest bucket root holding `path` (absolute), or None."""
    best: tuple[str, str, str] | None = None
    for name, root in roots.items():
        prefix = root.rstrip("/") + "/"
        if path.startswith(prefix) and (best is None or len(root) > len(best[1])):
            best = (name, root, path[len(prefix) :])
    return best


def explain_file(include: IncludeRules, roots: dict[str, str], path: str) -> dict[str, Any]:
    """Which rules apply to the file at `path` and where each came from (`ob-ctl config --for FILE`).
    Raises ValueError when no bucket holds it."""
    found = owner(roots, os.path.abspath(path))
    if found is None:
        shown = ", ".join(f"{n} ({r})" for n, r in roots.items())
        raise ValueError(f"{path} is in no bucket; the buckets are {shown}")
    bucket, root, relpath = found
    loaded = include.load(root, relpath)
    present = {p for p, _ in loaded.files}
    rules = loaded.rules
    return {
        "file": os.path.abspath(path),
        "bucket": bucket,
        "relpath": relpath,
        "profile": include.profile,
        "rule_files": [{"path": p, "exists": p in present} for p in include.candidates(root, relpath)],
        "applies": loaded.wire is not None,
        "includes": [{"pattern": r.pattern, "where": r.where} for r in rules.includes],
        "excludes": [{"pattern": r.pattern, "where": r.where} for r in rules.excludes],
        "dirs": [
            {"path": d.path, "patterns": [p.pattern for p in d.patterns], "where": f"{d.source}:{d.line}"}
            for d in rules.dirs
        ],
        "problems": [str(p) for p in rules.problems],
    }


def bucket_rule_files(root: str, profile: str, limit: int = 100_000) -> list[IncludeFile]:
    """Every rule file of a bucket, parsed: its own `.bucket-include` and `.{ext}.bucket-include` files,
    then the global profile's (for CONFIG_DUMP.md; a bucket's root is listed up to `limit` entries)."""
    out: list[IncludeFile] = []
    for directory in (root, profile):
        names: list[str] = []
        try:
            with os.scandir(directory) as entries:
                for i, entry in enumerate(entries):
                    if i >= limit:
                        break
                    if entry.name.endswith(bucket_include.INCLUDE_NAME) and entry.name.startswith("."):
                        names.append(entry.name)
        except OSError:
            continue
        # The plain file first, then per extension: the order `rule_files` reads them in.
        for name in sorted(names, key=lambda n: (n != bucket_include.INCLUDE_NAME, n))[:MAX_LISTED_FILES]:
            parsed = parse_rule_file(os.path.join(directory, name))
            if parsed is not None:
                out.append(parsed)
    return out
