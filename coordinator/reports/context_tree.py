"""CONTEXT_TREE-<bucket>.md, one per bucket, and CONTEXT_TREE.md, the index that links them.

One file per bucket because every note already links to `[[CONTEXT_TREE-<bucket>|<bucket>]]`
(`worker/pipeline/note.py`): the per-bucket file is what those links open, and `context_tree_name` makes
the same name from a bucket's name (plus what a file name cannot hold: a "/" in a bucket name becomes
"-"). CONTEXT_TREE.md lists the buckets, so the run summary has one page to link to.

Each bucket page holds the bucket's directory tree, file statistics (count, bytes, by extension), the grep
rules' match counts and the tags they put on notes. Two halves:

- `walk_bucket` (I/O): one breadth-first `os.scandir` walk. It never follows a symlink (a link is listed,
  never opened or entered), never leaves the root (no name from a listing can be ".." or hold a "/", and a
  directory is only listed if it is still, by device and inode, the one its parent's listing saw), and
  skips the directories the service writes (state, notes, processed, quarantine) when they lie inside the
  bucket, recognised by device and inode so no spelling of a path can hide one. It is bounded: at most
  `max_total` entries in all (a 100,000-file bucket costs a fraction of a second, then the page says
  "partial"), `max_depth` levels and `max_entries_per_dir` entries per directory shown (the statistics
  still count every entry walked).
- `render_context_tree` / `render_context_index` (pure): the pages, from walks and plain dicts.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.reports.markdown import (
    Cell,
    Md,
    code,
    fenced,
    front_matter,
    link_target,
    report_file_name,
    size,
    table,
    tag,
    tag_name,
    utc_iso,
    wikilink,
)

if TYPE_CHECKING:
    from coordinator.config import Config

INDEX_FILE_NAME = "CONTEXT_TREE.md"
#: Entries walked per bucket at most (scandir + one lstat per file: a few tens of ms).
MAX_TOTAL_ENTRIES = 20_000
#: Levels of the tree shown below the bucket root.
MAX_DEPTH = 4
#: Entries shown per directory (directories first, then by name); the rest are "… N more".
MAX_ENTRIES_PER_DIR = 40
#: Extensions listed in the statistics (most files first); the rest are summed in one row.
MAX_EXTENSIONS = 25


@dataclass
class TreeNode:
    """One entry of the shown tree. `kind` is dir, file, symlink (never followed), other (FIFO, socket,
    device), skipped (a directory the service writes) or unreadable."""

    name: str
    kind: str
    size: int | None = None  # files: bytes
    children: list[TreeNode] = field(default_factory=list)
    more: int = 0  # entries of this directory walked but not shown (per-directory limit)
    hidden: int = 0  # entries of this directory below the depth limit (counted, not shown)
    cut: bool = False  # the walk stopped inside this directory (total limit): it holds more than counted
    note: str | None = None  # why it is skipped, unreadable or not walked


@dataclass
class ExtensionStats:
    """Files and bytes of one extension."""

    files: int = 0
    bytes: int = 0


@dataclass
class BucketWalk:
    """What `walk_bucket` found: the shown tree and statistics over every entry walked."""

    root: str
    tree: TreeNode
    files: int = 0
    dirs: int = 0  # below the root
    symlinks: int = 0
    other: int = 0
    skipped: int = 0  # directories the service writes, not entered
    unreadable: int = 0  # directories that could not be listed
    total_bytes: int = 0
    by_extension: dict[str, ExtensionStats] = field(default_factory=dict)
    walked: int = 0  # entries looked at
    partial: bool = False  # stopped at `max_total`: the statistics are a lower bound
    missing: bool = False  # the root does not exist (or is not a directory)


def context_tree_name(bucket: str) -> str:
    """The file name of a bucket's page, `CONTEXT_TREE-<bucket>.md`, made safe (`report_file_name`)."""
    return report_file_name(f"CONTEXT_TREE-{bucket}")


def context_tree_link(bucket: str) -> Md:
    """`[[CONTEXT_TREE-<bucket>|<bucket>]]`, resolving to the file `context_tree_name` names; the alias is
    the sanitized name, as in the notes, so the two links read the same."""
    return wikilink(context_tree_name(bucket).removesuffix(".md"), link_target(bucket))


def skip_dirs(config: Config) -> list[Path]:
    """The directories the service writes, which a bucket's walk must not enter: the state dir, every
    bucket's notes dir, and the processed and quarantine dirs."""
    dirs = [config.service.state_dir.expanduser().absolute(), config.processed_dir(), config.quarantine_dir()]
    dirs += [config.bucket_output(b) for b in config.buckets]
    return dirs


def grep_tags_for(config: Config, bucket: str) -> dict[str, list[str]]:
    """The grep rules that apply to `bucket` (by name), each with the tags it puts on the notes it
    matches."""
    return {rule.name: list(rule.tags) for rule in config.grep if not rule.buckets or bucket in rule.buckets}


def grep_counts_from_records(
    records: Iterable[Mapping[str, Any]], bucket: str | None = None
) -> dict[str, int]:
    """Matching lines per grep rule, counted from SUCCESS records (their `context.grepMatches`), of one
    bucket (`watchDir`) or all. A record lists at most 50 lines per rule and file, so for files with more
    this is a lower bound."""
    counts: dict[str, int] = {}
    for record in records:
        if bucket is not None and record.get("watchDir") != bucket:
            continue
        context = record.get("context")
        matches = context.get("grepMatches") if isinstance(context, Mapping) else None
        for match in matches if isinstance(matches, list) else ():
            rule = match.get("rule") if isinstance(match, Mapping) else None
            if isinstance(rule, str):
                counts[rule] = counts.get(rule, 0) + 1
    return counts


# -- the walk -------------------------------------------------------------------------------------------


def walk_bucket(
    root: Path | str,
    *,
    skip: Iterable[Path | str] = (),
    max_depth: int = MAX_DEPTH,
    max_entries_per_dir: int = MAX_ENTRIES_PER_DIR,
    max_total: int = MAX_TOTAL_ENTRIES,
) -> BucketWalk:
    """Walk the bucket at `root` breadth first (so a bounded walk still shows the top levels whole).

    `skip`: directories not to enter (see `skip_dirs`); paths that do not exist are ignored. Nothing here
    follows a symlink: the root itself is the configured bucket path, below it every entry is looked at
    with `lstat` semantics.
    """
    top = os.fspath(root)
    walk = BucketWalk(root=top, tree=TreeNode(name=os.path.basename(top.rstrip(os.sep)) or top, kind="dir"))
    try:
        if not stat.S_ISDIR(os.stat(top).st_mode):
            raise NotADirectoryError(top)
    except OSError:
        walk.missing = True
        walk.tree.note = "missing"
        return walk
    skipped = _identities(skip)
    pending: deque[_Pending] = deque([(top, None, walk.tree, 0)])
    while pending:
        path, identity, node, depth = pending.popleft()
        if walk.walked >= max_total:
            walk.partial = True
            if node is not None:
                node.note = "not walked (entry limit)"
            continue
        entries = _list(path, identity, walk, max_total)
        if entries is None:
            walk.unreadable += 1
            if node is not None:
                node.kind, node.note = "unreadable", "cannot be listed, or changed while walked"
            continue
        listed, cut = entries
        if cut and node is not None:
            node.cut = True
        shown: list[TreeNode] = []
        for name, kind, nbytes, child_identity in listed:
            if kind == "dir" and child_identity in skipped:
                kind = "skipped"
            _count(walk, name, kind, nbytes)
            child = TreeNode(name=name, kind=kind, size=nbytes)
            if kind == "skipped":
                child.note = "written by the service, not walked"
            visible = node is not None and depth < max_depth and len(shown) < max_entries_per_dir
            if visible:
                shown.append(child)
            if kind == "dir":
                entry = (os.path.join(path, name), child_identity, child if visible else None, depth + 1)
                pending.append(entry)
        if node is not None:
            node.children = shown
            if depth < max_depth:
                node.more = len(listed) - len(shown)
            else:
                node.hidden = len(listed)
    return walk


#: A directory still to list: its path, the (dev, inode) its parent's listing saw (None: the root), its
#: node when it is shown, and its depth (0: the root).
_Pending = tuple[str, tuple[int, int] | None, TreeNode | None, int]


def _identities(paths: Iterable[Path | str]) -> set[tuple[int, int]]:
    out = set()
    for path in paths:
        try:
            st = os.stat(path)  # a skip dir may be given through a symlink: what it names is what counts
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def _open_dir(path: str, identity: tuple[int, int] | None) -> int | None:
    """An fd of the directory at `path`, if it is still the one its parent's listing saw: opened without
    following a final symlink, and checked by (dev, inode), so a directory swapped for a symlink (here or
    in any parent) after it was listed is refused rather than walked outside the bucket. The root
    (`identity` None) is the configured path and may be a symlink."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (os.O_NOFOLLOW if identity is not None else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    st = os.fstat(fd)
    if identity is not None and (st.st_dev, st.st_ino) != identity:
        os.close(fd)
        return None
    return fd


def _list(
    path: str, identity: tuple[int, int] | None, walk: BucketWalk, max_total: int
) -> tuple[list[tuple[str, str, int | None, tuple[int, int] | None]], bool] | None:
    """One directory's entries, sorted (directories first, then by name), as (name, kind, bytes, (dev,
    inode) of a directory), and whether the total limit cut the listing; None if it cannot be listed (or
    is no longer the directory that was listed: `_open_dir`)."""
    fd = _open_dir(path, identity)
    if fd is None:
        return None
    out: list[tuple[str, str, int | None, tuple[int, int] | None]] = []
    cut = False
    try:
        # Listing the fd: each entry's lstat is an fstatat relative to this very directory, whatever
        # happens to the path meanwhile.
        with os.scandir(fd) as it:
            for entry in it:
                if walk.walked >= max_total:
                    walk.partial = cut = True
                    break
                walk.walked += 1
                item = _classify(entry)
                if item is not None:
                    out.append(item)
    except OSError:
        if not out:
            return None
        cut = True  # an error half-way (the directory went away): keep what was listed
    finally:
        os.close(fd)  # scandir works on its own duplicate
    out.sort(key=lambda e: (e[1] != "dir", e[0]))
    return out, cut


def _classify(entry: os.DirEntry[str]) -> tuple[str, str, int | None, tuple[int, int] | None] | None:
    try:
        # follow_symlinks=False throughout: a link is reported as a link, whatever it points at.
        if entry.is_symlink():
            return entry.name, "symlink", None, None
        if entry.is_dir(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            return entry.name, "dir", None, (st.st_dev, st.st_ino)
        if entry.is_file(follow_symlinks=False):
            return entry.name, "file", entry.stat(follow_symlinks=False).st_size, None
        return entry.name, "other", None, None
    except OSError:
        return None  # gone between the listing and the look: it is not there any more


def _count(walk: BucketWalk, name: str, kind: str, nbytes: int | None) -> None:
    if kind == "file":
        walk.files += 1
        walk.total_bytes += nbytes or 0
        ext = os.path.splitext(name)[1].lower() or "(none)"
        stats = walk.by_extension.setdefault(ext, ExtensionStats())
        stats.files += 1
        stats.bytes += nbytes or 0
    elif kind == "dir":
        walk.dirs += 1
    elif kind == "symlink":
        walk.symlinks += 1
    elif kind == "skipped":
        walk.skipped += 1
    else:
        walk.other += 1


# -- the pages ------------------------------------------------------------------------------------------


def render_context_tree(
    bucket: str,
    walk: BucketWalk,
    *,
    generated: datetime | float,
    grep_counts: Mapping[str, int] | None = None,
    grep_tags: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The text of `context_tree_name(bucket)`.

    - `walk`: `walk_bucket(...)` of the bucket's root.
    - `grep_counts`: matching lines per grep rule in this bucket
      (`grep_counts_from_records(records, bucket)`).
    - `grep_tags`: the rules that apply to this bucket and their tags (`grep_tags_for(config, bucket)`); a
      rule with matches but not named here is still listed.
    """
    counts = dict(grep_counts or {})
    rules = dict(grep_tags or {})
    tag_names = list(dict.fromkeys(t for tags in rules.values() for raw in tags if (t := tag_name(raw))))
    front = front_matter(
        {
            "type": "open-buckets-context-tree",
            "bucket": bucket,
            "root": walk.root,
            "generated": utc_iso(generated),
            "files": walk.files,
            "dirs": walk.dirs,
            "total_bytes": walk.total_bytes,
            "entries_walked": walk.walked,
            "partial": walk.partial,
            "grep_matches": {rule: counts[rule] for rule in sorted(counts)},
            "tags": ["openbuckets", "openbuckets/context-tree", *tag_names],
        }
    )
    body = [
        f"# Context tree: {code(bucket)}",
        "",
        f"Bucket {code(bucket)} at {code(walk.root)}, generated {utc_iso(generated)}. "
        f"All buckets: {wikilink('CONTEXT_TREE')} · {wikilink('RUN_SUMMARY')}",
        "",
    ]
    if walk.partial:
        body += [
            "> [!warning] Partial",
            f"> The walk stopped after {walk.walked:,} entries: the tree and the statistics below cover what"
            " was walked, and the bucket holds more.",
            "",
        ]
    body += ["## Directory tree", ""]
    if walk.missing:
        body += ["The bucket directory does not exist (or is not a directory).", ""]
    else:
        body += [*fenced(_tree_lines(walk.tree)), ""]
    body += [*_statistics(walk), *_grep_section(counts, rules), *_tags_section(tag_names)]
    return front + "\n".join(body).rstrip("\n") + "\n"


def render_context_index(
    walks: Mapping[str, BucketWalk],
    *,
    generated: datetime | float,
    grep_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The text of CONTEXT_TREE.md: one row per bucket (`walks`: bucket name → its walk), linking its page;
    `grep_counts`: bucket → rule → matching lines, summed per bucket."""
    counts = grep_counts or {}
    front = front_matter(
        {
            "type": "open-buckets-context-tree-index",
            "generated": utc_iso(generated),
            "buckets": list(walks),
            "tags": ["openbuckets", "openbuckets/context-tree"],
        }
    )
    rows: list[list[Cell]] = [
        [
            context_tree_link(bucket),
            code(walk.root),
            None if walk.missing else walk.files,
            None if walk.missing else size(walk.total_bytes),
            sum(counts.get(bucket, {}).values()),
            "missing" if walk.missing else ("partial" if walk.partial else "complete"),
        ]
        for bucket, walk in walks.items()
    ]
    body = [
        "# Context trees",
        "",
        f"Generated {utc_iso(generated)}. See also {wikilink('RUN_SUMMARY')}.",
        "",
        *table(("Bucket", "Root", "Files", "Size", "Grep matches", "Walk"), rows),
    ]
    return front + "\n".join(body) + "\n"


def _tree_lines(root: TreeNode) -> list[str]:
    lines = [_label(root)]

    def branch(node: TreeNode, prefix: str) -> None:
        items: list[TreeNode | str] = [*node.children]
        if node.more or node.cut:
            more = f"… {node.more:,} more" if node.more else "…"
            items.append(more + (" (and more not walked: entry limit)" if node.cut else ""))
        if node.hidden:
            items.append(f"… {node.hidden:,} entries below the depth limit")
        for i, item in enumerate(items):
            last = i == len(items) - 1
            joint = "└── " if last else "├── "
            if isinstance(item, str):
                lines.append(prefix + joint + item)
                continue
            lines.append(prefix + joint + _label(item))
            if item.kind == "dir":
                branch(item, prefix + ("    " if last else "│   "))

    branch(root, "")
    return lines


def _label(node: TreeNode) -> str:
    # Inside a fenced block nothing is markdown; `fenced` makes each line one line, and the fence outgrows
    # any backticks in a name.
    if node.kind in ("dir", "skipped", "unreadable"):
        label = f"{node.name}/"
    elif node.kind == "file":
        label = f"{node.name} ({size(node.size)})"
    elif node.kind == "symlink":
        label = f"{node.name} -> (symlink, not followed)"
    else:
        label = f"{node.name} (not a regular file)"
    return label + (f" [{node.note}]" if node.note else "")


def _statistics(walk: BucketWalk) -> list[str]:
    if walk.missing:
        return []
    rows: list[tuple[str, Cell]] = [
        ("Files", walk.files),
        ("Total size", Md(f"{size(walk.total_bytes)} ({walk.total_bytes:,} bytes)")),
        ("Directories", walk.dirs),
        ("Symlinks (not followed)", walk.symlinks),
        ("Other (FIFOs, sockets, devices)", walk.other),
        ("Directories written by the service (skipped)", walk.skipped),
        ("Directories that could not be listed", walk.unreadable),
        ("Entries walked", walk.walked),
        ("Complete", not walk.partial),
    ]
    lines = ["## File statistics", "", *table(("Statistic", "Value"), rows), ""]
    ranked = sorted(walk.by_extension.items(), key=lambda item: (-item[1].files, item[0]))
    if ranked:
        ext_rows: list[list[Cell]] = [
            [code(ext) if ext != "(none)" else "(none)", s.files, s.bytes, size(s.bytes)]
            for ext, s in ranked[:MAX_EXTENSIONS]
        ]
        rest = ranked[MAX_EXTENSIONS:]
        if rest:
            files = sum(s.files for _, s in rest)
            nbytes = sum(s.bytes for _, s in rest)
            ext_rows.append([f"{len(rest):,} more extensions", files, nbytes, size(nbytes)])
        lines += ["By extension:", "", *table(("Extension", "Files", "Bytes", "Size"), ext_rows), ""]
    return lines


def _grep_section(counts: Mapping[str, int], rules: Mapping[str, Sequence[str]]) -> list[str]:
    names = list(dict.fromkeys([*rules, *sorted(counts)]))
    lines = ["## Grep matches", ""]
    if not names:
        return [*lines, "No grep rules apply to this bucket.", ""]
    rows: list[list[Cell]] = []
    for name in names:
        tags = [t for raw in rules.get(name, ()) if (t := tag(raw))]
        rows.append([code(name), counts.get(name, 0), Md(" ".join(tags)) if tags else None])
    lines += [*table(("Rule", "Matching lines", "Tags"), rows), ""]
    lines += ["Counted from the SUCCESS records (each lists at most 50 lines per rule and file).", ""]
    return lines


def _tags_section(tag_names: Sequence[str]) -> list[str]:
    lines = ["## Tags", ""]
    if not tag_names:
        return [*lines, "No grep rule of this bucket puts a tag on notes.", ""]
    return [*lines, " ".join(f"#{t}" for t in tag_names), ""]


__all__ = [
    "INDEX_FILE_NAME",
    "BucketWalk",
    "ExtensionStats",
    "TreeNode",
    "context_tree_link",
    "context_tree_name",
    "grep_counts_from_records",
    "grep_tags_for",
    "render_context_index",
    "render_context_tree",
    "skip_dirs",
    "walk_bucket",
]
