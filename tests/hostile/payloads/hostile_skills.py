"""Hostile handler skills: each function is one attack, run by a real sandboxed worker on a real file.

The tests copy this module into a skill directory next to `hostile_params.json` (ports, planted paths,
markers), configure one `[[skills]]` rule per attack, and read the ERROR / SUCCESS records. A function
that returns normally means the attack did nothing harmful (the note says what it saw); one that raises
shows what the sandbox refused.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

PARAMS: dict[str, Any] = json.loads((Path(__file__).parent / "hostile_params.json").read_text())
_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _grandchild(marker: str) -> None:
    """Fork, leave the session, fork again and exec a long sleep that names `marker`: the classic escape
    from a process group and from its parent."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(300)", marker])
        os._exit(0)


# -- resources ----------------------------------------------------------------------------------------------


def alloc(path: str, ctx: object) -> dict[str, Any]:
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))


def spin(path: str, ctx: object) -> dict[str, Any]:
    while True:
        pass


def forkbomb(path: str, ctx: object) -> dict[str, Any]:
    while True:
        if os.fork() == 0:
            time.sleep(300)
            os._exit(0)


def bigfile(path: str, ctx: object) -> dict[str, Any]:
    chunk = b"\0" * (1024 * 1024)
    with open(os.path.join(os.environ.get("TMPDIR", "."), "big.bin"), "wb") as fh:
        for _ in range(10 * 1024):  # 10 GiB
            fh.write(chunk)
    return {"wrote": "10 GiB"}


def flood(path: str, ctx: object) -> dict[str, Any]:
    line = b"x" * 1023 + b"\n"
    block = line * 1024  # 1 MiB
    for _ in range(50):
        sys.stdout.buffer.write(block)
        os.write(2, block)
    sys.stdout.flush()
    return {"flooded_mib": 100}


# -- crashes ------------------------------------------------------------------------------------------------


def segv(path: str, ctx: object) -> dict[str, Any]:
    ctypes.string_at(0)
    return {}


def exit7(path: str, ctx: object) -> dict[str, Any]:
    os._exit(7)


def deaf_sleeper(path: str, ctx: object) -> dict[str, Any]:
    _libc.signal(signal.SIGTERM, 1)  # SIG_IGN, process-wide (signal.signal only works on the main thread)
    time.sleep(3600)
    return {}


def grandchild(path: str, ctx: object) -> dict[str, Any]:
    _grandchild(PARAMS["marker"] + "-after-job")
    return {"spawned": True}


def grandchild_then_die(path: str, ctx: object) -> dict[str, Any]:
    _grandchild(PARAMS["marker"] + "-after-worker")
    time.sleep(0.2)
    os._exit(3)


# -- the network --------------------------------------------------------------------------------------------


def tcp(path: str, ctx: object) -> dict[str, Any]:
    socket.create_connection(("127.0.0.1", PARAMS["tcp_port"]), timeout=2).close()
    return {"connected": True}


def udp(path: str, ctx: object) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"exfiltrated", ("127.0.0.1", PARAMS["udp_port"]))
    return {"sent": True}


def dns(path: str, ctx: object) -> dict[str, Any]:
    return {"address": str(socket.getaddrinfo("example.com", 80)[0][4])}


def abstract_unix(path: str, ctx: object) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect("\0" + PARAMS["abstract_name"])
    return {"connected": True}


def path_unix(path: str, ctx: object) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(PARAMS["unix_path"])
    return {"connected": True}


# -- the filesystem -----------------------------------------------------------------------------------------


def read_secret(path: str, ctx: object) -> dict[str, Any]:
    return {"secret": Path(PARAMS["secret"]).read_text()}


def write_outside(path: str, ctx: object) -> dict[str, Any]:
    Path(PARAMS["outside_write"]).write_text("written by a hostile skill")
    return {"written": True}


def coordinator_environ(path: str, ctx: object) -> dict[str, Any]:
    """The coordinator's environment (its secrets) and memory map, through /proc."""
    ppid = os.getppid()
    return {"environ": Path(f"/proc/{ppid}/environ").read_bytes()[:200].decode(errors="replace")}


def thread_reads_secret(path: str, ctx: object) -> dict[str, Any]:
    got: list[BaseException | str] = []
    t = threading.Thread(target=lambda: got.append(_try_read(PARAMS["secret"])))
    t.start()
    t.join(5)
    if isinstance(got[0], BaseException):
        raise got[0]
    return {"secret": got[0]}


def _try_read(p: str) -> BaseException | str:
    try:
        return Path(p).read_text()
    except BaseException as exc:  # handed to the handler's thread, which raises it
        return exc


# -- other processes and the kernel -------------------------------------------------------------------------


def kill_coordinator(path: str, ctx: object) -> dict[str, Any]:
    os.kill(os.getppid(), signal.SIGKILL)
    return {"killed": os.getppid()}


def kill_other_worker(path: str, ctx: object) -> dict[str, Any]:
    me = os.getpid()
    others = [p for p in _worker_pids() if p != me]
    if not others:
        raise RuntimeError("no other worker found to attack")
    for pid in others:
        os.kill(pid, signal.SIGKILL)
    return {"killed": others}


def ptrace_coordinator(path: str, ctx: object) -> dict[str, Any]:
    _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    _libc.ptrace.restype = ctypes.c_long
    _check(_libc.ptrace(16, os.getppid(), None, None), "ptrace(PTRACE_ATTACH)")  # 16: PTRACE_ATTACH
    return {"attached": True}


def ptrace_other_worker(path: str, ctx: object) -> dict[str, Any]:
    others = [p for p in _worker_pids() if p != os.getpid()]
    if not others:
        raise RuntimeError("no other worker found to attack")
    _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    _libc.ptrace.restype = ctypes.c_long
    for pid in others:
        _check(_libc.ptrace(16, pid, None, None), f"ptrace(PTRACE_ATTACH, {pid})")
    return {"attached": others}


def setuid_helper(path: str, ctx: object) -> dict[str, Any]:
    """Leave a setuid-root program behind for a local user to run later."""
    helper = os.path.join(os.environ.get("TMPDIR", "."), "helper")
    with open(helper, "w") as fh:
        fh.write("#!/bin/sh\nid\n")
    os.chmod(helper, 0o4755)
    return {"planted": helper}


def unshare_user(path: str, ctx: object) -> dict[str, Any]:
    _check(_libc.unshare(0x10000000), "unshare(CLONE_NEWUSER)")
    return {"unshared": True}


def mount_tmpfs(path: str, ctx: object) -> dict[str, Any]:
    target = os.environ.get("TMPDIR", ".").encode()
    _check(_libc.mount(b"none", target, b"tmpfs", 0, None), "mount")
    return {"mounted": True}


def _worker_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"worker" in cmdline
            and b"--slot" in cmdline
            and PARAMS["state_dir"].encode() in b" ".join(cmdline)
        ):
            pids.append(int(entry))
    return pids


def slow(path: str, ctx: object) -> dict[str, Any]:
    """Holds the file long enough for a test to change or remove it while it is being processed; says when
    it has started (the file is open by then) with a marker in the notes dir, which a skill may write."""
    Path(PARAMS["notes"], f".started-{os.path.basename(path)}").touch()
    time.sleep(PARAMS.get("slow_s", 1.5))
    return {"slept_s": PARAMS.get("slow_s", 1.5)}
