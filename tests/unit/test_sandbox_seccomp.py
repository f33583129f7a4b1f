"""seccomp: the early filter's refusals, clone handling, and the late stage's ban on new unix sockets.

Every refused syscall is called with arguments the kernel itself would reject (a bad fd, a NULL pointer, an
invalid flag mix), so a filter that failed to load makes the test fail on the errno without doing anything.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.unit.test_sandbox_support import errno_of, in_child, make_spec, reports_by_name
from worker.sandbox import _libc, _libseccomp, apply_early, apply_late, seccomp

CLONE_THREAD = 0x00010000  # without CLONE_SIGHAND the kernel answers EINVAL: nothing is ever created


def _need_libseccomp() -> None:
    try:
        _libseccomp.library()
    except OSError as exc:
        pytest.skip(f"{_libseccomp.SONAME} is not installed: {exc}")


def _raw(name: str, *args: int) -> int:
    """errno of a raw syscall by name (0 when it succeeds)."""
    nr = _libseccomp.resolve(name)
    assert nr is not None, name
    return 0 if _libc.syscall(nr, *args) >= 0 else ctypes.get_errno()


@pytest.mark.timeout(30)
def test_network_families_other_than_unix_are_refused(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path, disable=["netns"])  # so only the filter can refuse these
    families = {
        "AF_INET": socket.AF_INET,
        "AF_INET6": socket.AF_INET6,
        "AF_NETLINK": socket.AF_NETLINK,
        "AF_PACKET": socket.AF_PACKET,
        "AF_ALG": socket.AF_ALG,
        "AF_VSOCK": socket.AF_VSOCK,
    }

    def body() -> dict[str, int]:
        apply_early(spec)
        got = {
            name: errno_of(lambda f=family: socket.socket(f, socket.SOCK_DGRAM).close())
            for name, family in families.items()
        }
        got["AF_UNIX"] = errno_of(lambda: socket.socket(socket.AF_UNIX).close())
        # The kernel truncates the family to an int: junk in the upper bits must not slip through.
        nr = _libseccomp.resolve("socket")
        assert nr is not None
        got["high_bits"] = (
            0
            if _libc.syscall(nr, (1 << 32) | socket.AF_INET, socket.SOCK_DGRAM, 0) >= 0
            else ctypes.get_errno()
        )
        return got

    got = in_child(body)
    assert got == {**{name: errno.EPERM for name in families}, "AF_UNIX": 0, "high_bits": errno.EPERM}


@pytest.mark.timeout(30)
def test_dangerous_syscalls_are_refused(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path)

    def body() -> dict[str, int]:
        apply_early(spec)
        libc = _libc.libc()
        mount_errno = (
            0
            if libc.mount(b"none", spec.scratch.encode(), b"ob-no-such-fs", 0, None) == 0
            else ctypes.get_errno()
        )
        return {
            # request 0xFFFF is invalid (ESRCH/EIO unfiltered); the filter answers first
            "ptrace": _raw("ptrace", 0xFFFF, 0, 0, 0),
            "process_vm_readv": _raw("process_vm_readv", 0, 0, 0, 0, 0, 0),
            "unshare(0)": _raw("unshare", 0),
            "unshare(NEWNET)": _raw("unshare", _libc.CLONE_NEWNET),
            "setns": _raw("setns", -1, 0),
            "mount": mount_errno,
            "bpf": _raw("bpf", -1, 0, 0),
            "keyctl": _raw("keyctl", -1, 0, 0, 0, 0),
            "io_uring_setup": _raw("io_uring_setup", 0, 0),
            "userfaultfd": _raw("userfaultfd", -1),
            "perf_event_open": _raw("perf_event_open", 0, 0, -1, -1, 0),
            "open_by_handle_at": _raw("open_by_handle_at", -1, 0, 0),
            "fsopen": _raw("fsopen", 0, 0),
        }

    got = in_child(body)
    assert got == dict.fromkeys(got, errno.EPERM)


@pytest.mark.timeout(30)
def test_clone_into_namespaces_is_refused_but_threads_and_programs_work(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path)

    def body() -> dict[str, object]:
        apply_early(spec)
        out: dict[str, object] = {"clone3": _raw("clone3", 0, 0)}  # ENOSYS: glibc falls back to clone
        for name, flag in seccomp.CLONE_NEW_FLAGS.items():
            out[name] = _raw("clone", flag | CLONE_THREAD, 0, 0, 0, 0)
        out["invalid_clone_unfiltered"] = _raw("clone", CLONE_THREAD, 0, 0, 0, 0)
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(threading.get_native_id()))
        thread.start()
        thread.join()
        out["thread_ran"] = bool(seen)
        out["shell"] = subprocess.run(["/bin/sh", "-c", "echo hi"], capture_output=True, text=True).stdout
        return out

    got = in_child(body)
    assert got.pop("clone3") == errno.ENOSYS
    assert got.pop("invalid_clone_unfiltered") == errno.EINVAL  # the probe itself never creates anything
    assert got.pop("thread_ran") is True and got.pop("shell") == "hi\n"
    assert got == dict.fromkeys(seccomp.CLONE_NEW_FLAGS, errno.EPERM)


@pytest.mark.timeout(30)
def test_the_late_stage_refuses_new_unix_sockets_only(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path)

    def body() -> dict[str, object]:
        apply_early(spec)
        left, right = socket.socketpair()  # made before the late stage: keeps working
        report = apply_late(spec)
        left.sendall(b"ping")
        echoed = right.recv(4)
        return {
            "report": report.to_dict(),
            "socket": errno_of(lambda: socket.socket(socket.AF_UNIX).close()),
            "socketpair": errno_of(socket.socketpair),
            "echoed": echoed.decode(),
        }

    got = in_child(body)
    assert got["report"]["active"] and "AF_UNIX" in got["report"]["detail"]
    assert got["socket"] == got["socketpair"] == errno.EPERM
    assert got["echoed"] == "ping"


@pytest.mark.timeout(30)
def test_the_late_stage_alone_is_not_reported_active(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path, disable=["landlock"])
    disabled = make_spec(tmp_path, disable=["seccomp"])

    def body() -> dict[str, object]:
        reports = reports_by_name(apply_early(disabled))
        return {"early": reports["seccomp"].to_dict(), "late": apply_late(spec).to_dict()}

    got = in_child(body)
    assert got["early"]["detail"] == "disabled by config"
    assert not got["late"]["active"] and "early one is missing" in got["late"]["detail"]


@pytest.mark.timeout(30)
def test_names_unknown_on_this_architecture_are_skipped() -> None:
    _need_libseccomp()
    assert _libseccomp.resolve("ob_no_such_syscall") is None
    assert _libseccomp.resolve("socket") is not None


@pytest.mark.timeout(30)
def test_no_setuid_or_setgid_bit_can_be_set_but_ordinary_modes_can(tmp_path: Path) -> None:
    _need_libseccomp()
    spec = make_spec(tmp_path)
    target = Path(spec.write[0]) / "helper"

    def body() -> dict[str, object]:
        apply_early(spec)
        import os
        import stat

        target.write_bytes(b"#!/bin/sh\n")
        results: dict[str, object] = {}
        for label, call in (
            ("chmod 4755", lambda: os.chmod(target, 0o4755)),
            ("chmod 2755", lambda: os.chmod(target, 0o2755)),
            ("fchmod 4755", lambda: os.fchmod(os.open(target, os.O_RDONLY), 0o4755)),
            ("open O_CREAT 4755", lambda: os.open(str(target) + "2", os.O_CREAT | os.O_WRONLY, 0o4755)),
        ):
            try:
                call()
                results[label] = 0
            except OSError as exc:
                results[label] = exc.errno
        os.chmod(target, 0o755)  # an ordinary mode still works
        results["mode"] = stat.S_IMODE(os.stat(target).st_mode)
        results["openat2"] = _raw("openat2", -100, 0, 0, 0)
        results["fchmodat2 4755"] = _raw("fchmodat2", -100, 0, 0o4755, 0)
        return results

    got = in_child(body)
    assert got == {
        "chmod 4755": errno.EPERM,
        "chmod 2755": errno.EPERM,
        "fchmod 4755": errno.EPERM,
        "open O_CREAT 4755": errno.EPERM,
        "mode": 0o755,
        "openat2": errno.ENOSYS,
        "fchmodat2 4755": errno.EPERM,
    }
