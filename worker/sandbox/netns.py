"""Layer "netns": a new, empty network namespace, so TCP, UDP and abstract unix sockets lead nowhere.

`unshare(CLONE_NEWNET)` (through ctypes: `os.unshare` only arrives in Python 3.12) needs CAP_SYS_ADMIN, so
this runs before the capabilities are dropped. The loopback interface is left down: nothing inside the
namespace can even talk to itself. Path-based `ipc://` sockets live in the filesystem, not in the network
namespace, and keep working. The namespace is per thread: only the calling thread moves, which is why this
must run before any thread starts.
"""

from __future__ import annotations

import os

from protocol.sandbox import SandboxSpec
from worker.sandbox import _libc, procfs
from worker.sandbox.errors import LayerUnavailable
from worker.sandbox.probes import NetProbe

_NS_LINK = "/proc/self/ns/net"
#: The namespace we were born in, recorded by apply() so check() can prove we left it.
_original_ns: int | None = None


def _interfaces() -> list[str]:
    with open("/proc/self/net/dev", encoding="utf-8") as fh:
        return [line.split(":", 1)[0].strip() for line in fh.readlines()[2:] if ":" in line]


def apply(spec: SandboxSpec) -> str:
    """Move into a new network namespace."""
    global _original_ns
    before = os.stat(_NS_LINK).st_ino
    try:
        _libc.unshare(_libc.CLONE_NEWNET)
    except OSError as exc:
        hint = " (not root: needs CAP_SYS_ADMIN)" if os.geteuid() != 0 else ""
        raise LayerUnavailable(f"unshare(CLONE_NEWNET): {exc.strerror or exc}{hint}") from exc
    _original_ns = before
    threads = procfs.thread_count()
    if threads > 1:
        raise LayerUnavailable(f"threads already running ({threads}): only the calling thread moved")
    return f"new network namespace net:[{os.stat(_NS_LINK).st_ino}], no interface up"


def check(spec: SandboxSpec, net: NetProbe) -> str | None:
    """None when every thread is in a namespace other than the one we started in, with only a loopback
    interface, and neither TCP nor UDP reaches 127.0.0.1."""
    inodes = procfs.task_netns()
    mine = os.stat(_NS_LINK).st_ino
    if _original_ns is not None and mine == _original_ns:
        return "still in the original network namespace"
    strays = [tid for tid, ino in inodes.items() if ino != mine]
    if strays:
        return f"threads {strays} are in another network namespace"
    others = [name for name in _interfaces() if name != "lo"]
    if others:
        return f"interfaces other than lo are visible: {', '.join(others)}"
    for name, reach in (("TCP", net.tcp), ("UDP", net.udp)):
        if not reach.blocked:
            return f"{name} reaches 127.0.0.1: {reach.how}"
    return None
