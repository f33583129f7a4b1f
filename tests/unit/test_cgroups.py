"""coordinator/cgroups.py: the mount and /proc/self/cgroup parsing against fixture text (runs anywhere), and
real per-worker cgroups where this machine allows them (skipped with the reason elsewhere)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator import cgroups
from coordinator.cgroupfs import Hierarchies, find_hierarchies, parse_mountinfo, parse_self_cgroup
from coordinator.cgroups import CgroupLimits, CgroupUnavailable, WorkerCgroups, WorkerGroup
from tests.harness import wait_for

MiB = 1 << 20
TAG = f"test{os.getpid()}"

HYBRID_MOUNTS = """\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/91b1976a
1:cpu,cpuacct:/
0::/
"""
PURE_V2_MOUNTS = (
    "25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,seclabel,nsdelegate,memory_recursiveprot\n"
)
PURE_V2_CGROUP = "0::/user.slice/user-1000.slice/session-2.scope\n"


def test_parse_hybrid() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTS)
    assert [m.point.name for m in mounts] == ["cpu", "cpuset", "memory", "pids", "systemd", "unified"]
    assert [m.version for m in mounts][-1] == 2 and "memory" in mounts[2].options
    assert parse_self_cgroup(HYBRID_CGROUP) == (
        {"name=systemd": "/", "pids": "/", "memory": "/process_api/91b1976a", "cpu": "/", "cpuacct": "/"},
        "/",
    )
    h = find_hierarchies(HYBRID_MOUNTS, HYBRID_CGROUP)
    assert h == Hierarchies(
        memory=Path("/sys/fs/cgroup/memory/process_api/91b1976a"),
        pids=Path("/sys/fs/cgroup/pids"),
        unified=Path("/sys/fs/cgroup/unified"),
    )


def test_parse_pure_v2() -> None:
    h = find_hierarchies(PURE_V2_MOUNTS, PURE_V2_CGROUP)
    assert h == Hierarchies(unified=Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"))


def test_parse_no_cgroups_and_read_only() -> None:
    h = find_hierarchies("24 29 0:22 / /sys rw,nosuid - sysfs sysfs rw\n", "0::/\n")
    assert (h.memory, h.pids, h.unified) == (None, None, None)
    assert h.notes == ("no cgroup filesystem mounted",)
    ro = "25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
    h = find_hierarchies(ro, "0::/\n")
    assert h.unified is None and "read-only" in h.notes[0]


def test_parse_container_mount_root_and_escapes() -> None:
    """A container sees its own cgroup bind-mounted as the mount's root; a space in a mount point is \\040."""
    mounts = "50 40 0:32 /docker/abc /sys/fs/my\\040cg rw - cgroup cgroup rw,memory\n"
    h = find_hierarchies(mounts, "4:memory:/docker/abc/sub\n")
    assert h.memory == Path("/sys/fs/my cg/sub")
    h = find_hierarchies(mounts, "4:memory:/elsewhere\n")
    assert h.memory is None and "not below its root" in h.notes[0]


def test_create_without_cgroups_says_why(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text("24 29 0:22 / /sys rw - sysfs sysfs rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    with pytest.raises(CgroupUnavailable, match="no cgroup filesystem mounted"):
        WorkerCgroups.create(
            CgroupLimits(64 * MiB, 8),
            tag=TAG,
            mounts_file=str(tmp_path / "mountinfo"),
            self_cgroup_file=str(tmp_path / "cgroup"),
        )
    with pytest.raises(CgroupUnavailable, match="cannot read"):
        WorkerCgroups.create(CgroupLimits(64 * MiB, 8), mounts_file=str(tmp_path / "missing"))


def test_pure_v2_limits_on_a_fake_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-v2 path (this machine is hybrid), on plain files: controllers already enabled for our cgroup,
    enabled on our root, and memory.max/pids.max written for a group."""
    own = tmp_path / "cg" / "svc"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu io memory pids\n")
    (own / "cgroup.subtree_control").write_text("memory pids\n")
    (tmp_path / "mountinfo").write_text(
        f"25 22 0:23 / {tmp_path / 'cg'} rw - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    (tmp_path / "cgroup").write_text("0::/svc\n")
    real_make_root = cgroups._make_root

    def make_root(parent: Path, name: str, notes: list[str], label: str) -> Path | None:
        root = real_make_root(parent, name, notes, label)
        if root is not None:  # what the kernel shows in a child of a cgroup with memory+pids enabled
            (root / "cgroup.controllers").write_text("memory pids\n")
            (root / "cgroup.subtree_control").write_text("")
        return root

    monkeypatch.setattr(cgroups, "_make_root", make_root)
    files = {"mounts_file": str(tmp_path / "mountinfo"), "self_cgroup_file": str(tmp_path / "cgroup")}
    cg = WorkerCgroups.create(CgroupLimits(64 * MiB, 8), tag=TAG, **files)
    assert cg.describe() == "v2 memory+pids" and list(cg.roots) == ["v2"]
    assert (cg.roots["v2"] / "cgroup.subtree_control").read_text() == "+memory +pids"
    group = cg.new_group("w0.1")
    assert (group.dirs[0] / "memory.max").read_text() == str(64 * MiB)
    assert (group.dirs[0] / "pids.max").read_text() == "8"
    (group.dirs[0] / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (group.dirs[0] / "pids.events").write_text("max 2\n")
    assert (group.oom_kills(), group.pids_limit_hits(), group.memory_peak()) == (1, 2, None)

    (own / "cgroup.subtree_control").write_text("")
    (own / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(CgroupUnavailable, match="memory\\+pids not available in"):
        WorkerCgroups.create(CgroupLimits(64 * MiB, 8), tag=TAG + "b", **files)


@pytest.mark.timeout(30)
def test_hybrid_unified_alone_cannot_limit(tmp_path: Path) -> None:
    """A v2 hierarchy without memory/pids controllers (this machine's 'unified') cannot limit on its own."""
    unified = Path("/sys/fs/cgroup/unified")
    if not unified.is_dir() or "memory" in cgroups._read(unified / "cgroup.controllers").split():
        pytest.skip("no controller-less unified hierarchy here")
    (tmp_path / "mountinfo").write_text(f"41 31 0:38 / {unified} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    with pytest.raises(CgroupUnavailable, match="memory\\+pids not available in|cannot create"):
        WorkerCgroups.create(
            CgroupLimits(64 * MiB, 8),
            tag=TAG,
            mounts_file=str(tmp_path / "mountinfo"),
            self_cgroup_file=str(tmp_path / "cgroup"),
        )
    assert _leftovers() == []


# --- real cgroups -----------------------------------------------------------------------------------------


def _here() -> Hierarchies:
    return find_hierarchies(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())


def _own_dirs() -> list[Path]:
    h = _here()
    return [d for d in (h.memory, h.pids, h.unified) if d is not None]


def _leftovers() -> list[Path]:
    return [p for d in _own_dirs() for p in d.glob(f"openbuckets-*-{TAG}*")]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


@pytest.fixture
def make() -> Iterator[Callable[..., WorkerCgroups]]:
    """WorkerCgroups.create with our tag (skips with the reason where unavailable); closes them afterwards and
    checks that no cgroup dir of this test run is left."""
    made: list[WorkerCgroups] = []

    def create(memory_bytes: int = 64 * MiB, pids_max: int = 16) -> WorkerCgroups:
        try:
            cg = WorkerCgroups.create(CgroupLimits(memory_bytes, pids_max), tag=TAG)
        except CgroupUnavailable as e:
            pytest.skip(f"cgroups unavailable: {e}")
        made.append(cg)
        return cg

    yield create
    for cg in made:
        cg.close()
    assert _leftovers() == []


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _gated(procs: list[subprocess.Popen[Any]], group: WorkerGroup, code: str) -> subprocess.Popen[str]:
    """A python child that runs `code` only once it is in `group` (it waits for a line on stdin)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys\nsys.stdin.readline()\n" + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    group.add(proc.pid)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc


@pytest.mark.timeout(30)
def test_group_dirs_and_limits(make: Callable[..., WorkerCgroups]) -> None:
    cg = make(memory_bytes=96 * MiB, pids_max=12)
    text = cg.describe()
    assert "memory" in text and "pids" in text
    group = cg.new_group("w0.1")
    assert len(group.dirs) == len(cg.roots) and all(d.is_dir() for d in group.dirs)
    limits = {"memory": "memory.limit_in_bytes", "pids": "pids.max"}
    for kind, file in limits.items():
        d = group._by_kind[kind] if kind in cg.roots else group._by_kind["v2"]
        name = file if kind in cg.roots else {"memory": "memory.max", "pids": "pids.max"}[kind]
        assert (d / name).read_text().strip() == str(96 * MiB if kind == "memory" else 12)
    memsw = group._by_kind.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
    if memsw.exists():
        assert memsw.read_text().strip() == str(96 * MiB)
    assert group.pids() == set() and not group.populated()
    assert group.oom_kills() == 0 and group.pids_limit_hits() == 0
    assert group.remove() and not any(d.exists() for d in group.dirs)


@pytest.mark.timeout(30)
def test_add_child(make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]]) -> None:
    group = make().new_group("w0.2")
    proc = subprocess.Popen(["sleep", "300"])
    procs.append(proc)
    group.add(proc.pid)
    assert group.pids() == {proc.pid} and group.populated()
    for d in group.dirs:
        assert str(proc.pid) in (d / "cgroup.procs").read_text().split()
    assert group.remove() is False  # still populated: refused, nothing raised
    group.kill()
    assert proc.wait(timeout=10) == -9
    wait_for(group.remove, 10, "the emptied group to be removable")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["cgroup.kill", "sweep"])
def test_kill_reaches_setsid_double_forked_grandchild(
    make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]], how: str
) -> None:
    group = make().new_group("w0.3")
    killer = group
    if how == "sweep":  # SIGKILL what cgroup.procs lists, as without cgroup.kill (v1 only, kernel < 5.14)
        v1 = {kind: d for kind, d in group._by_kind.items() if kind != "v2"}
        killer = WorkerGroup(group.name, list(v1.values()), v1)
    elif not any((d / "cgroup.kill").exists() for d in group.dirs):
        pytest.skip("no cgroup.kill here")
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '300'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = _gated(procs, group, code)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    wait_for(lambda: len(group.pids()) == 2, 10, "the grandchild to show in the group")
    (grandchild,) = group.pids() - {proc.pid}
    assert os.getsid(grandchild) != os.getsid(proc.pid)  # out of reach of killpg
    killer.kill()
    assert proc.wait(timeout=10) == -9
    wait_for(lambda: _gone(grandchild), 10, "the setsid'ed grandchild to die")
    wait_for(lambda: not group.pids() and not group.populated(), 10, "the group to empty")
    assert group.remove()


@pytest.mark.timeout(30)
def test_memory_limit_ooms(make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]]) -> None:
    group = make(memory_bytes=64 * MiB).new_group("w0.4")
    proc = _gated(procs, group, "chunks = [b'x' * (16 << 20) for _ in range(16)]\nprint('survived')\n")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == -9 and "survived" not in out
    assert group.oom_kills() >= 1
    peak = group.memory_peak()
    assert peak is None or 0 < peak <= 64 * MiB
    wait_for(group.remove, 10, "the group to be removable")


@pytest.mark.timeout(30)
def test_pids_limit(make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]]) -> None:
    group = make(pids_max=8).new_group("w0.5")
    code = (
        "import os, time\n"
        "ok = failed = 0\n"
        "for _ in range(20):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(300)\n"
        "        os._exit(0)\n"
        "    ok += 1\n"
        "print(ok, failed, flush=True)\n"
        "time.sleep(300)\n"
    )
    proc = _gated(procs, group, code)
    assert proc.stdout is not None
    ok, failed = map(int, proc.stdout.readline().split())
    assert failed >= 1 and ok + 1 <= 8
    assert group.pids_limit_hits() >= 1
    assert len(group.pids()) <= 8
    group.kill()
    assert proc.wait(timeout=10) == -9
    wait_for(group.remove, 10, "the group to be removable")


def _dead_pid() -> int:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    for pid in range(pid_max - 1, 300, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
    raise AssertionError("no free pid")


@pytest.mark.timeout(30)
def test_stale_root_of_a_dead_coordinator_is_removed(
    make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]]
) -> None:
    make().close()  # skips here if cgroups are unavailable
    stale = [d / f"openbuckets-{_dead_pid()}-{TAG}-stale" for d in _own_dirs()]
    sleeper = subprocess.Popen(["sleep", "300"])
    procs.append(sleeper)
    try:
        for root in stale:
            (root / "w0.1").mkdir(parents=True)
            (root / "w0.1" / "cgroup.procs").write_text(str(sleeper.pid))
        make()
        assert sleeper.wait(timeout=10) == -9
        assert [root for root in stale if root.exists()] == []
    finally:  # when create() did not clean up: undo by hand
        sleeper.kill()
        sleeper.wait(timeout=10)
        for root in stale:
            for d in (root / "w0.1", root):
                with contextlib.suppress(FileNotFoundError):
                    d.rmdir()


@pytest.mark.timeout(30)
def test_close_kills_and_removes_everything(
    make: Callable[..., WorkerCgroups], procs: list[subprocess.Popen[Any]]
) -> None:
    cg = make()
    groups = [cg.new_group(f"w1.{i}") for i in range(3)]
    sleepers = [subprocess.Popen(["sleep", "300"]) for _ in groups]
    procs.extend(sleepers)
    for group, sleeper in zip(groups, sleepers, strict=True):
        group.add(sleeper.pid)
    cg.close()
    assert [s.wait(timeout=10) for s in sleepers] == [-9, -9, -9]
    assert not any(d.exists() for group in groups for d in group.dirs)
    assert not any(root.exists() for root in cg.roots.values())
    cg.close()  # twice is harmless
