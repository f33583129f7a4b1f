"""Landlock: what a sandboxed child can and cannot touch, signal scoping, and the thread rules."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.unit.test_sandbox_support import NEEDLE, errno_of, in_child, make_spec, reports_by_name
from worker.sandbox import apply_early, landlock_abi, landlock_paths
from worker.sandbox.landlock_abi import FS_EXECUTE, FS_IOCTL_DEV, FS_REFER, FS_TRUNCATE


def _landlock_abi() -> int:
    try:
        return landlock_abi.abi_version()
    except OSError as exc:
        pytest.skip(f"no Landlock on this kernel: {exc}")


def _read(path: str | Path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _write(path: str | Path, text: str = "x") -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


@pytest.mark.timeout(30)
def test_only_the_allowed_paths_are_reachable(tmp_path: Path) -> None:
    _landlock_abi()
    spec = make_spec(tmp_path)
    read_dir, write_dir = Path(spec.read[0]), Path(spec.write[0])
    elsewhere = f"/tmp/ob-sandbox-probe-{os.getpid()}"

    def body() -> dict[str, object]:
        reports = apply_early(spec)
        script = Path(spec.scratch) / "run.sh"
        _write(script, "#!/bin/sh\necho ran\n")
        script.chmod(0o700)
        out = {
            "landlock": reports_by_name(reports)["landlock"].to_dict(),
            "canary": errno_of(lambda: _read(spec.canary)),
            "read_ok": NEEDLE in _read(read_dir / "hello.txt"),
            "list_read": sorted(os.listdir(read_dir)),
            "write_in_read": errno_of(lambda: _write(read_dir / "new.txt")),
            "write_ok": errno_of(lambda: _write(write_dir / "note.md", "# note")),
            "rename_in_write": errno_of(lambda: os.rename(write_dir / "note.md", write_dir / "renamed.md")),
            "mkdir_in_write": errno_of(lambda: os.mkdir(write_dir / "sub")),
            "write_tmp": errno_of(lambda: _write(elsewhere)),
            "list_root": errno_of(lambda: os.listdir("/")),
            "list_etc": errno_of(lambda: os.listdir("/etc")),
            "etc_passwd": errno_of(lambda: _read("/etc/passwd")),
            "list_home_of_root": errno_of(lambda: os.listdir("/root")),
            "exec_from_scratch": errno_of(lambda: subprocess.run([str(script)])),
            "dev_null": errno_of(lambda: _write("/dev/null")),
            "urandom": len(os.urandom(8)),
        }
        return out

    got = in_child(body)
    assert got["landlock"]["active"], got["landlock"]
    assert got["landlock"]["detail"].startswith(f"ABI {_landlock_abi()}: fs")
    assert got["canary"] == errno.EACCES
    assert got["read_ok"] and got["list_read"] == ["hello.txt"]
    assert got["write_in_read"] == errno.EACCES
    assert got["write_ok"] == got["rename_in_write"] == got["mkdir_in_write"] == 0
    assert (write_dir / "renamed.md").read_text() == "# note"
    assert got["write_tmp"] == errno.EACCES and not os.path.exists(elsewhere)
    assert got["list_root"] == got["list_etc"] == got["list_home_of_root"] == errno.EACCES
    assert got["etc_passwd"] == 0  # one of the few /etc files a C library needs
    assert got["exec_from_scratch"] == errno.EACCES  # written files are data, never programs
    assert got["dev_null"] == 0 and got["urandom"] == 8


@pytest.mark.timeout(30)
def test_a_thread_started_after_the_sandbox_is_bound_too(tmp_path: Path) -> None:
    _landlock_abi()
    spec = make_spec(tmp_path)

    def body() -> int:
        apply_early(spec)
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(errno_of(lambda: _read(spec.canary))))
        thread.start()
        thread.join()
        return seen[0]

    assert in_child(body) == errno.EACCES


@pytest.mark.timeout(30)
def test_the_sandbox_cannot_signal_its_parent_but_can_signal_its_children(tmp_path: Path) -> None:
    if _landlock_abi() < 6:
        pytest.skip("signal scoping needs Landlock ABI 6")
    spec = make_spec(tmp_path)

    def body() -> dict[str, int]:
        apply_early(spec)
        child = subprocess.Popen(["/bin/sh", "-c", "read line"], stdin=subprocess.PIPE)
        kill_child = errno_of(child.kill)  # same domain: allowed
        child.wait()
        return {"parent": errno_of(lambda: os.kill(os.getppid(), 0)), "child": kill_child}

    got = in_child(body)
    assert got == {"parent": errno.EPERM, "child": 0}


@pytest.mark.timeout(30)
def test_landlock_is_refused_while_another_thread_runs(tmp_path: Path) -> None:
    _landlock_abi()
    spec = make_spec(tmp_path)

    def body() -> dict[str, object]:
        release = threading.Event()
        thread = threading.Thread(target=release.wait)
        thread.start()
        try:
            reports = apply_early(spec)
        finally:
            release.set()
            thread.join()
        return {r.name: r.to_dict() for r in reports}

    reports = in_child(body)
    assert not reports["landlock"]["active"]
    assert reports["landlock"]["detail"].startswith("threads already running")
    # capabilities and the network namespace are per thread as well
    assert not reports["caps"]["active"] and not reports["netns"]["active"]
    assert reports["seccomp"]["active"]  # TSYNC reaches every thread


@pytest.mark.timeout(30)
def test_handled_rights_follow_the_abi() -> None:
    assert landlock_abi.handled_fs(1) == (1 << 13) - 1
    assert landlock_abi.handled_fs(2) == landlock_abi.handled_fs(1) | FS_REFER
    assert landlock_abi.handled_fs(4) == landlock_abi.handled_fs(2) | FS_TRUNCATE
    assert landlock_abi.handled_fs(7) == landlock_abi.handled_fs(3) | FS_IOCTL_DEV
    assert [landlock_abi.attr_size(abi) for abi in (1, 3, 4, 5, 6, 7)] == [8, 8, 16, 16, 24, 24]
    assert landlock_abi.features(3) == "fs"
    assert landlock_abi.features(5) == "fs, tcp"
    assert landlock_abi.features(7) == "fs, tcp, scoped"
    assert landlock_abi.handled_net(3) == 0 and landlock_abi.scoped(5) == 0


@pytest.mark.timeout(30)
def test_rules_never_open_the_root_or_the_canarys_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path)
    monkeypatch.setattr(sys, "path", ["/", str(tmp_path), "", *sys.path])
    paths = dict(landlock_paths.rules(spec))
    assert "/" not in paths and str(tmp_path) not in paths and os.getcwd() in paths
    for broad in ("/etc", "/tmp", "/home", "/root"):
        assert broad not in paths
    assert paths["/usr"] & FS_EXECUTE and not paths[spec.scratch] & FS_EXECUTE
    assert not paths[spec.read[0]] & ~landlock_paths.READ
