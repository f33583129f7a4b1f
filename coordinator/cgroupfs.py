"""Finding the cgroup hierarchies: which are mounted where, and where the coordinator sits in each.

Pure functions over the text of /proc/self/mountinfo and /proc/self/cgroup, so the detection is tested on
fixture text for every layout (hybrid v1 + v2, pure v2, none, read-only, a container whose mount root is not
"/") without root. `coordinator.cgroups` uses the answer to create the workers' groups.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mount:
    """A cgroup mount in mountinfo: `version` 1 or 2, `options` its super options (v1: the controllers)."""

    point: Path
    root: str
    version: int
    options: frozenset[str]
    read_only: bool


def _unescape(field_: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in /proc/self/mountinfo text, in order."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(","))
        ro = "ro" in fields[5].split(",") or "ro" in options
        point, root = Path(_unescape(fields[4])), _unescape(fields[3])
        mounts.append(Mount(point, root, 2 if tail[0] == "cgroup2" else 1, options, ro))
    return mounts


def parse_self_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """/proc/self/cgroup text -> ({v1 controller: path}, v2 path or None)."""
    v1: dict[str, str] = {}
    v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        else:
            v1.update((name, parts[2]) for name in parts[1].split(",") if name)
    return v1, v2


@dataclass(frozen=True)
class Hierarchies:
    """The coordinator's own cgroup directory in each hierarchy we can use, and why others are missing."""

    memory: Path | None = None  # v1 memory
    pids: Path | None = None  # v1 pids
    unified: Path | None = None  # v2 (hybrid "unified" or pure v2)
    notes: tuple[str, ...] = ()


def find_hierarchies(mountinfo: str, self_cgroup: str) -> Hierarchies:
    """Match mounts with our cgroup paths (pure function of the two files' text)."""
    v1_paths, v2_path = parse_self_cgroup(self_cgroup)
    found: dict[str, Path] = {}
    notes: list[str] = []
    for mount in parse_mountinfo(mountinfo):
        for key in ("memory", "pids", "unified"):
            if key in found or (mount.version == 2) != (key == "unified"):
                continue
            if key != "unified" and key not in mount.options:
                continue
            own = v2_path if key == "unified" else v1_paths.get(key)
            label = f"cgroup v2 at {mount.point}" if key == "unified" else f"v1 {key} at {mount.point}"
            rel = os.path.relpath(own, mount.root) if own and own.startswith("/") else ".."
            if mount.read_only:
                notes.append(f"{label} is mounted read-only")
            elif rel == ".." or rel.startswith("../"):
                notes.append(f"{label}: our cgroup {own} is not below its root {mount.root}")
            else:
                found[key] = mount.point / rel if rel != "." else mount.point
    if not found and not notes:
        notes.append("no cgroup filesystem mounted")
    return Hierarchies(found.get("memory"), found.get("pids"), found.get("unified"), tuple(notes))
