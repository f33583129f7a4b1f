"""Try the network from inside: can this process reach 127.0.0.1 over TCP or UDP?

Run once by `verify` and shared by the netns, seccomp and Landlock checks. Each probe first sets up its own
receiver on 127.0.0.1 when it can, so a refused or successful connection proves the network stack answered
(ECONNREFUSED counts as *reachable*: only a layer's own error, such as EPERM from seccomp, EACCES from
Landlock or ENETUNREACH in an empty namespace, counts as blocked).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

#: Where to aim when no receiver could be set up (the receiver's own failure already says the net is shut).
FALLBACK_PORT = 9


@dataclass(frozen=True)
class Reach:
    """The outcome of one probe."""

    blocked: bool
    #: The socket could not even be created and the error was EPERM (the seccomp signature).
    socket_refused: bool
    how: str


@dataclass(frozen=True)
class NetProbe:
    """Both probes, as `verify` hands them to the layer checks."""

    tcp: Reach
    udp: Reach


def _describe(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _receiver(kind: socket.SocketKind) -> tuple[socket.socket | None, int]:
    """A TCP listener or UDP socket on 127.0.0.1 and its port, or (None, FALLBACK_PORT) when refused."""
    try:
        sock = socket.socket(socket.AF_INET, kind)
    except OSError:
        return None, FALLBACK_PORT
    try:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
        return sock, int(sock.getsockname()[1])
    except OSError:
        sock.close()
        return None, FALLBACK_PORT


def probe_tcp(timeout: float = 2.0) -> Reach:
    """Connect to 127.0.0.1 over TCP."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return Reach(True, exc.errno == errno.EPERM, f"socket(AF_INET, SOCK_STREAM): {_describe(exc)}")
    receiver, port = _receiver(socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        return Reach(False, False, f"connected to 127.0.0.1:{port}")
    except ConnectionRefusedError:
        return Reach(False, False, f"127.0.0.1:{port} answered (connection refused)")
    except OSError as exc:
        return Reach(True, False, f"connect 127.0.0.1:{port}: {_describe(exc)}")
    finally:
        sock.close()
        if receiver is not None:
            receiver.close()


def probe_udp() -> Reach:
    """Send one datagram to 127.0.0.1."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        return Reach(True, exc.errno == errno.EPERM, f"socket(AF_INET, SOCK_DGRAM): {_describe(exc)}")
    receiver, port = _receiver(socket.SOCK_DGRAM)
    try:
        sock.sendto(b"ob-sandbox-probe", ("127.0.0.1", port))
        return Reach(False, False, f"sent a datagram to 127.0.0.1:{port}")
    except OSError as exc:
        return Reach(True, False, f"sendto 127.0.0.1:{port}: {_describe(exc)}")
    finally:
        sock.close()
        if receiver is not None:
            receiver.close()


def probe_network() -> NetProbe:
    """Both probes."""
    return NetProbe(tcp=probe_tcp(), udp=probe_udp())


def unix_socket_refused() -> bool:
    """Whether creating a new AF_UNIX socket is refused with EPERM (the late seccomp stage)."""
    try:
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()
    except PermissionError:
        return True
    except OSError:
        return False
    return False
