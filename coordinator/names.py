"""Which paths the watcher takes: temp-name globs, bucket include/ignore globs, excluded directories.

The rules (applied in this order, by `coordinator.watcher`):

1. **Temp names** (`watcher.temp_ignore`, e.g. `.*`, `*.tmp`, `~*`) are matched with `fnmatch` against the
   basename *and every directory component* of the path relative to its bucket, so `.git/config` and
   `a/.cache/b.csv` are ignored and a scan never descends into `.git/`. Counted as `ignored`.
2. **Excluded directories** (the service's own output and state directories, which may live inside a bucket):
   anything at or below one of them is ignored. Counted as `ignored`.
3. **Bucket globs**: a glob without `/` matches the basename, a glob with `/` matches the whole posix relative
   path (`fnmatch`, where `*` also crosses `/`, so `reports/*.csv` matches `reports/2024/a.csv`). A file that
   matches any `ignore` glob, or no `patterns` glob (an empty `patterns` list means `["*"]`), is counted as
   `rejected` and not emitted.

Matching is case-sensitive (`fnmatchcase`): two names that differ in case are different files on Linux.
Globs are compiled into one regular expression per list, so a rescan of 100,000 names stays cheap.

Which bucket a path belongs to is decided here too (`Buckets`): buckets may nest, and a path belongs to the
deepest root that holds it, so the rules above are always the innermost bucket's. Buckets can be added and
removed at run time; ownership, the set of roots and the excluded directories' spellings follow at once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import translate
from pathlib import Path
from typing import Literal

from protocol.bucket_include import INCLUDE_NAME

Verdict = Literal["ok", "ignored", "rejected"]


def kind_of(mode: int) -> str:
    """The `Sighting.kind` of an lstat mode: file, symlink, fifo, device, socket or directory."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    # Whiteouts, doors, event ports: nothing a worker could read either; the coordinator reports it.
    return "device"


def _compile(globs: Iterable[str]) -> re.Pattern[str] | None:
    parts = [translate(g) for g in globs]
    return re.compile("|".join(parts)) if parts else None


_MAGIC = re.compile(r"[*?\[]")


class NameGlobs:
    """Globs matched against one name. The usual temp-name globs are a prefix (`~*`, `.*`) or a suffix
    (`*.tmp`), which are string tests; only the others go to one regex. Every file of a scan is asked."""

    def __init__(self, globs: Iterable[str]) -> None:
        prefixes: list[str] = []
        suffixes: list[str] = []
        exact: set[str] = set()
        other: list[str] = []
        for glob in globs:
            if not _MAGIC.search(glob):
                exact.add(glob)
            elif glob.startswith("*") and not _MAGIC.search(glob[1:]):
                suffixes.append(glob[1:])
            elif glob.endswith("*") and not _MAGIC.search(glob[:-1]):
                prefixes.append(glob[:-1])
            else:
                other.append(glob)
        self._prefixes, self._suffixes, self._exact = tuple(prefixes), tuple(suffixes), frozenset(exact)
        self._regex = _compile(other)

    def match(self, name: str) -> bool:
        """Whether `name` matches one of the globs (`fnmatchcase` semantics)."""
        return (
            name.startswith(self._prefixes)
            or name.endswith(self._suffixes)
            or name in self._exact
            or (self._regex is not None and self._regex.match(name) is not None)
        )


class GlobSet:
    """Globs split by form: those without `/` match a basename, those with `/` match a relative path."""

    def __init__(self, globs: Iterable[str]) -> None:
        globs = list(globs)
        self.everything = "*" in globs  # the default include: skip the regex for every file of a scan
        self._by_name = _compile(g for g in globs if "/" not in g)
        self._by_path = _compile(g for g in globs if "/" in g)
        self.empty = not globs  # matches nothing

    def matches(self, relpath: str, name: str) -> bool:
        """Whether `relpath` (posix, relative to the bucket) or its basename `name` matches a glob."""
        if self.everything:
            return True
        return bool(
            (self._by_name is not None and self._by_name.match(name))
            or (self._by_path is not None and self._by_path.match(relpath))
        )


class NameRules:
    """One bucket's name rules: the shared temp-name globs plus the bucket's own include/ignore globs."""

    def __init__(self, temp_ignore: Iterable[str], patterns: Iterable[str], ignore: Iterable[str]) -> None:
        # `.bucket-include` files are configuration, never input, whatever temp_ignore says.
        self._temp = NameGlobs([*temp_ignore, f"*{INCLUDE_NAME}"])
        self._include = GlobSet(list(patterns) or ["*"])
        self._ignore = GlobSet(ignore)
        # The default bucket (include everything, ignore nothing) needs only the temp-name test: a scan asks
        # about every file, so that case skips the glob sets.
        self._names_only = self._include.everything and self._ignore.empty

    def is_temp(self, name: str) -> bool:
        """Whether one path component is a temp or hidden name (`.git`, `x.part`, `~lock`)."""
        return self._temp.match(name)

    def verdict(self, relpath: str, *, dirs_checked: bool = False) -> Verdict:
        """Decide on a non-directory entry at `relpath` (posix, relative to its bucket root).

        `dirs_checked=True` skips the temp check of the directory components: a scan has already pruned
        temp directories on its way down, so only the basename is left to look at.
        """
        name = relpath.rpartition("/")[2]
        if dirs_checked:
            if self._temp.match(name):
                return "ignored"
            if self._names_only:
                return "ok"
        elif any(self.is_temp(part) for part in relpath.split("/")):
            return "ignored"
        if self._ignore.matches(relpath, name) or not self._include.matches(relpath, name):
            return "rejected"
        return "ok"


class Exclusions:
    """Directories whose contents are never ours to process (the service's output and state).

    A directory may be named through a symlink while events arrive under the bucket's own spelling of the
    path, so each one is kept both as given and as its real location re-expressed under every bucket root
    that contains it. Matching is then a plain string-prefix test, with no I/O per event.
    """

    def __init__(self, dirs: Iterable[Path], roots: Iterable[str]) -> None:
        spellings: set[str] = set()
        real_roots = [(root, os.path.realpath(root)) for root in roots]
        for d in dirs:
            given = os.path.abspath(os.fspath(d))
            real = os.path.realpath(given)
            spellings.update((given, real))
            for root, real_root in real_roots:
                if real == real_root or real.startswith(real_root + os.sep):
                    spellings.add(os.path.normpath(os.path.join(root, os.path.relpath(real, real_root))))
        self._exact = frozenset(spellings)
        self._prefixes = tuple(s.rstrip(os.sep) + os.sep for s in spellings)

    def covers(self, path: str) -> bool:
        """Whether absolute `path` is one of the excluded directories or lies below one."""
        return path in self._exact or path.startswith(self._prefixes)


def posix_relpath(relpath: str) -> str:
    """A relative path spelled with "/" (the spelling of `Sighting.key` and of the path globs)."""
    # Linux spells paths with "/" already; keep the key portable all the same.
    return relpath if os.sep == "/" else relpath.replace(os.sep, "/")


@dataclass(slots=True)
class Bucket:
    """One watched bucket: its name, its root spelled the ways the watcher needs, and its name rules."""

    name: str
    root: str  # absolute, normalised: watchdog spells event paths from it
    prefix: str  # root + separator
    root_path: Path
    rules: NameRules


class Buckets:
    """The buckets by name, and which one owns a path: the deepest root that holds it.

    Also holds what depends on the set of roots: `roots` (a scan of an outer bucket prunes the inner ones)
    and `exclusions` (an excluded directory is spelled under every root that holds it). Both are rebuilt
    whenever a bucket is added or removed. Not thread-safe: the watcher uses it from the loop thread only.
    """

    def __init__(self, temp_ignore: Iterable[str], exclude_dirs: Iterable[Path]) -> None:
        self._temp_ignore = list(temp_ignore)
        self._exclude_dirs = list(exclude_dirs)
        self._by_name: dict[str, Bucket] = {}  # in the order they were added
        self._by_depth: list[Bucket] = []  # deepest root first: the first prefix that matches is the owner
        self.roots: frozenset[str] = frozenset()
        self.exclusions = Exclusions(self._exclude_dirs, ())

    def __iter__(self) -> Iterator[Bucket]:
        return iter(list(self._by_name.values()))  # a copy: callers may add or remove while iterating

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> Bucket:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        """Bucket names, in the order they were added."""
        return list(self._by_name)

    def add(self, name: str, root: Path | str, patterns: Iterable[str], ignore: Iterable[str]) -> Bucket:
        """Register a bucket (no I/O). Raises `ValueError` if the name or the root is already a bucket's."""
        absolute = os.path.abspath(os.fspath(root))
        if name in self._by_name:
            raise ValueError(f"bucket {name!r} already exists (root {self._by_name[name].root})")
        for other in self._by_name.values():
            if other.root == absolute:
                raise ValueError(f"{absolute} is already the root of bucket {other.name!r}")
        rules = NameRules(self._temp_ignore, patterns, ignore)
        bucket = Bucket(name, absolute, absolute.rstrip(os.sep) + os.sep, Path(absolute), rules)
        self._by_name[name] = bucket
        self._reindex()
        return bucket

    def remove(self, name: str) -> Bucket:
        """Forget a bucket and return it. Raises `ValueError` if there is none of that name."""
        bucket = self._by_name.pop(name, None)
        if bucket is None:
            known = ", ".join(repr(n) for n in self._by_name) or "none"
            raise ValueError(f"no bucket named {name!r} (buckets: {known})")
        self._reindex()
        return bucket

    def set_excluded_dirs(self, exclude_dirs: Iterable[Path]) -> None:
        """A new list of directories to leave alone (buckets and their notes dirs changed at run time)."""
        self._exclude_dirs = list(exclude_dirs)
        self.refresh_exclusions()

    def refresh_exclusions(self) -> None:
        """Spell the excluded directories again. Call it once roots exist: a directory named through a
        symlink is placed inside a root by comparing real paths, and a missing root has none yet."""
        self.exclusions = Exclusions(self._exclude_dirs, self.roots)

    def locate(self, path: str) -> tuple[Bucket, str] | None:
        """The bucket owning absolute `path` and the posix path relative to its root ("" for the root
        itself); None if no bucket holds it (outside them all, or its bucket was removed)."""
        for bucket in self._by_depth:
            if path.startswith(bucket.prefix):
                return bucket, posix_relpath(path[len(bucket.prefix) :])
            if path == bucket.root:
                return bucket, ""
        return None

    def _reindex(self) -> None:
        self._by_depth = sorted(self._by_name.values(), key=lambda b: len(b.root), reverse=True)
        self.roots = frozenset(b.root for b in self._by_name.values())
        self.refresh_exclusions()
