"""Per-worker cgroups: a memory and a process-count limit that hold for root, an out-of-memory counter, and a
kill that reaches every process a worker started.

Why cgroups (ARCHITECTURE section 5, layer 1): `RLIMIT_NPROC` does not bind root and `RLIMIT_AS` only makes
allocations fail, whereas a cgroup caps the *resident* memory and the number of tasks of a whole process tree,
the kernel counts its OOM kills (`oom_kill`) and failed forks (`pids.events max`), and a process cannot leave
it: `setsid` plus a double fork escapes `killpg`, not the group, so killing every pid listed in `cgroup.procs`
(or writing v2 `cgroup.kill`) ends the whole tree.

Layout. Hierarchies are found from /proc/self/mountinfo and our place in each from /proc/self/cgroup
(`coordinator.cgroupfs`). Under
the coordinator's own cgroup, in every usable hierarchy, we create one root `openbuckets-<pid>[-tag]`, and a
group per worker process below it. The limits come from the v1 `memory` and `pids` hierarchies where those
are mounted (the hybrid layout); otherwise from v2, where both controllers must be enabled in our own
cgroup's `cgroup.subtree_control`: the v2 "no internal processes" rule forbids that while our cgroup holds
processes (the coordinator itself), and moving the coordinator is not this module's business, so we report
why instead. A v2 hierarchy without controllers (hybrid `unified`) is still used for `cgroup.kill` and
`cgroup.events`. Anything unusable (no mounts, read-only, no controllers) raises `CgroupUnavailable` with
a one-line reason, so the sandbox reports the layer as missing instead of assuming it.

A coordinator that is SIGKILLed leaves its root and maybe live workers behind; `create` kills and removes
roots whose pid is not a live process (a pid reused since is taken as alive: the root is then left for a
later start). A root holding processes outside our pid namespace (v2 lists them as 0) is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.cgroupfs import find_hierarchies

_ROOT_RE = re.compile(r"openbuckets-(\d{1,7})(?:-[\w.-]+)?")
_NAME_RE = re.compile(r"[\w.-]{1,64}")
_POLL = 0.005


class CgroupUnavailable(Exception):
    """No usable cgroup for memory and pids limits; str() says why in one line."""


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    pids_max: int

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.pids_max <= 0:
            raise ValueError(f"cgroup limits must be positive: {self}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> bool:
    """Best-effort write: False instead of OSError."""
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _counter(text: str, key: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


def _pids(cgroup_dir: Path) -> set[int]:
    return {int(p) for p in _read(cgroup_dir / "cgroup.procs").split() if p.isdigit() and p != "0"}


def _signal_members(cgroup_dir: Path, pids: set[int]) -> None:
    """SIGKILL `pids`, through pidfds re-checked against cgroup.procs so that a reused pid is spared."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # gone already
            fds[pid] = os.pidfd_open(pid)
    try:
        members = _pids(cgroup_dir)
        for pid, fd in fds.items():
            if pid in members:
                with contextlib.suppress(OSError):  # exited meanwhile
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        for fd in fds.values():
            os.close(fd)


def _kill_dir(cgroup_dir: Path, timeout: float) -> bool:
    """SIGKILL what cgroup.procs lists until a read shows none (True) or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while pids := _pids(cgroup_dir):
        _signal_members(cgroup_dir, pids)
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _destroy_tree(top: Path, timeout: float) -> bool:
    """Kill everything in `top` and below, then rmdir deepest first; True when `top` is gone."""
    deadline = time.monotonic() + timeout
    dirs = [Path(d) for d, _, _ in os.walk(top, topdown=False)]
    _write(top / "cgroup.kill", "1")  # fails in v1 or before Linux 5.14: the SIGKILL sweep below does it
    for d in dirs:
        _kill_dir(d, max(0.0, deadline - time.monotonic()))
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)
    return not top.exists()


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def _remove_stale(parent: Path, own_root: str) -> None:
    """Destroy roots left by dead coordinators (and our own name, left by an unclosed earlier instance)."""
    try:
        entries = [e for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in entries:
        m = _ROOT_RE.fullmatch(entry.name)
        if m is None or not (entry.name == own_root or (int(m.group(1)) > 0 and _dead(int(m.group(1))))):
            continue
        tree = [Path(d) for d, _, _ in os.walk(entry.path)]
        if any("0" in _read(d / "cgroup.procs").split() for d in tree):
            continue  # holds processes of another pid namespace: not ours to kill
        _destroy_tree(Path(entry.path), timeout=2.0)


@dataclass(eq=False)
class WorkerGroup:
    """The cgroup of one worker process: one directory per hierarchy."""

    name: str
    dirs: list[Path]
    _by_kind: dict[str, Path] = field(default_factory=dict, repr=False)  # "memory", "pids", "v2"

    def add(self, pid: int) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        return set().union(*(_pids(d) for d in self.dirs))

    def kill(self) -> None:
        """Kill the whole tree: `cgroup.kill` when a v2 dir has it (then one sweep of the v1 dirs without
        waiting), else SIGKILL every listed pid until a read shows none (bounded). Never raises."""
        v2 = self._by_kind.get("v2")
        killed = v2 is not None and (v2 / "cgroup.kill").exists() and _write(v2 / "cgroup.kill", "1")
        for d in self.dirs:
            _kill_dir(d, timeout=0.0 if killed else 1.0)

    def oom_kills(self) -> int:
        paths = self._paths(memory="memory.oom_control", v2="memory.events")
        return sum(_counter(_read(p), "oom_kill") for p in paths)

    def pids_limit_hits(self) -> int:
        return sum(_counter(_read(p), "max") for p in self._paths(pids="pids.events", v2="pids.events"))

    def memory_peak(self) -> int | None:
        for path in self._paths(memory="memory.max_usage_in_bytes", v2="memory.peak"):
            if (text := _read(path).strip()).isdigit():
                return int(text)
        return None

    def populated(self) -> bool:
        v2 = self._by_kind.get("v2")
        if v2 is not None and (events := _read(v2 / "cgroup.events")):
            return _counter(events, "populated") > 0
        return bool(self.pids())

    def remove(self) -> bool:
        """rmdir every dir; False (nothing raised) while a dir is still populated, True when all are gone."""
        gone = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone

    def _paths(self, **files: str) -> list[Path]:
        return [self._by_kind[kind] / f for kind, f in files.items() if kind in self._by_kind]


class WorkerCgroups:
    """The per-coordinator cgroup root (one dir 'openbuckets-<coordinator pid>[-tag]' created under the
    coordinator's own cgroup in each usable hierarchy: v1 memory, v1 pids, and v2 (unified or pure v2)),
    and the groups for individual worker processes below it. One instance per (process, tag)."""

    def __init__(self, limits: CgroupLimits, roots: dict[str, Path], v2_limits: frozenset[str]) -> None:
        self.limits = limits
        self.roots = roots  # kind ("memory", "pids", "v2") -> our root dir
        self._v2_limits = v2_limits  # controllers the v2 root provides ("memory", "pids")
        self._groups: list[WorkerGroup] = []

    @classmethod
    def create(
        cls,
        limits: CgroupLimits,
        *,
        tag: str | None = None,
        mounts_file: str = "/proc/self/mountinfo",
        self_cgroup_file: str = "/proc/self/cgroup",
    ) -> WorkerCgroups:
        """Raises CgroupUnavailable (with the reasons) unless both memory and pids can be limited; first
        destroys stale roots of dead coordinators. `tag` makes the root 'openbuckets-<pid>-<tag>'."""
        if tag is not None and not _NAME_RE.fullmatch(tag):
            raise ValueError(f"bad cgroup tag {tag!r}")
        try:
            h = find_hierarchies(Path(mounts_file).read_text(), Path(self_cgroup_file).read_text())
        except OSError as e:
            raise CgroupUnavailable(f"cannot read {e.filename}: {e.strerror}") from e
        name = f"openbuckets-{os.getpid()}" + (f"-{tag}" if tag else "")
        notes, roots = list(h.notes), {}
        for kind, own in (("memory", h.memory), ("pids", h.pids)):
            if own is not None and (root := _make_root(own, name, notes, f"v1 {kind}")) is not None:
                roots[kind] = root
        need = frozenset(k for k in ("memory", "pids") if k not in roots)
        v2_limits: frozenset[str] = frozenset()
        if (
            h.unified is not None
            and (not need or _enable_v2(h.unified, need, notes))
            and (root := _make_root(h.unified, name, notes, "cgroup v2")) is not None
        ):
            roots["v2"] = root
            if need and _enable_v2(root, need, notes):
                v2_limits = need
        if need - v2_limits:
            cls(limits, roots, frozenset()).close()
            missing = "+".join(sorted(need))
            raise CgroupUnavailable(
                f"no cgroup for {missing}: " + ("; ".join(notes) or "no usable hierarchy")
            )
        if "memory" in roots and _read(roots["memory"] / "memory.use_hierarchy").strip() == "0":
            _write(roots["memory"] / "memory.use_hierarchy", "1")  # always 1 on new kernels
        return cls(limits, roots, v2_limits)

    def describe(self) -> str:
        v1 = "+".join(k for k in ("memory", "pids") if k in self.roots)
        v2 = [*sorted(self._v2_limits)]
        if "v2" in self.roots and (self.roots["v2"] / "cgroup.kill").exists():
            v2.append("kill")
        return ", ".join(p for p in (f"v1 {v1}" if v1 else "", f"v2 {'+'.join(v2)}" if v2 else "") if p)

    def new_group(self, name: str) -> WorkerGroup:
        """Create `name` in every hierarchy and write the limits; OSError (having removed what it made)."""
        if not _NAME_RE.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        by_kind = {kind: root / name for kind, root in self.roots.items()}
        group = WorkerGroup(name, list(by_kind.values()), by_kind)
        mem, cap = str(self.limits.memory_bytes), str(self.limits.pids_max)
        # In order (memsw must stay >= limit_in_bytes); a file ending in "?" is written only if present.
        writes = [("memory", "memory.limit_in_bytes", mem), ("memory", "memory.memsw.limit_in_bytes?", mem)]
        writes += [("pids", "pids.max", cap)]
        if "memory" in self._v2_limits:
            writes += [("v2", "memory.max", mem), ("v2", "memory.swap.max?", "0")]
        if "pids" in self._v2_limits:
            writes += [("v2", "pids.max", cap)]
        try:
            for d in group.dirs:
                if d.exists():  # left by an earlier worker of that name: start empty
                    _destroy_tree(d, timeout=1.0)
                d.mkdir()
            for kind, file, value in writes:
                path = by_kind[kind] / file.rstrip("?") if kind in by_kind else None
                if path is not None and (not file.endswith("?") or path.exists()):
                    path.write_text(value)
        except OSError:
            group.remove()
            raise
        self._groups.append(group)
        return group

    def forget(self, group: WorkerGroup) -> None:
        """`group` was removed: stop tracking it (a long run starts thousands of workers)."""
        with contextlib.suppress(ValueError):
            self._groups.remove(group)

    def close(self) -> None:
        """Kill and remove every group and the roots; best effort, never raises."""
        for group in self._groups:
            group.kill()
        for root in self.roots.values():
            with contextlib.suppress(OSError):
                _destroy_tree(root, timeout=2.0)
        self._groups.clear()


def _make_root(own: Path, name: str, notes: list[str], label: str) -> Path | None:
    _remove_stale(own, name)
    try:
        (own / name).mkdir()
    except OSError as e:
        notes.append(f"{label}: cannot create {own / name}: {e.strerror}")
        return None
    return own / name


def _enable_v2(own: Path, need: frozenset[str], notes: list[str]) -> bool:
    """Make `need` available to our root's subtree in pure v2, or say why not."""
    missing = need - set(_read(own / "cgroup.controllers").split())
    if missing:
        notes.append(f"cgroup v2: {'+'.join(sorted(missing))} not available in {own}")
        return False
    if need <= set(_read(own / "cgroup.subtree_control").split()):
        return True
    try:
        (own / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(need)))
    except OSError as e:
        if e.errno == errno.EBUSY:
            notes.append(
                f"cgroup v2: {own} holds processes; run the coordinator in its own cgroup"
                " (systemd-run --scope) to get memory and pids limits"
            )
        else:
            notes.append(f"cgroup v2: cannot enable {'+'.join(sorted(need))} in {own}: {e.strerror}")
        return False
    return True
