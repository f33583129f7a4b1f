"""The network from inside the sandbox: nothing reaches the host, whichever layer stops it."""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_sandbox_support import errno_of, in_child, make_spec, reports_by_name
from worker.sandbox import apply_early, landlock_abi, verify


@pytest.fixture
def listeners() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP listener and a UDP socket on 127.0.0.1, both run by the test itself."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(8)
        udp.bind(("127.0.0.1", 0))
        yield tcp, udp
    finally:
        tcp.close()
        udp.close()


def _arrived(sock: socket.socket) -> bool:
    """Whether anything is queued on sock. The child's attempts are synchronous and the child has exited
    by the time this runs, so anything that got through is already here: no waiting needed."""
    return bool(select.select([sock], [], [], 0)[0])


def _tcp(port: int) -> int:
    def connect() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

    return errno_of(connect)


def _udp(port: int) -> int:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"hello", ("127.0.0.1", port))

    return errno_of(send)


@pytest.mark.timeout(30)
def test_tcp_and_udp_to_the_host_fail(tmp_path: Path, listeners: tuple[socket.socket, socket.socket]) -> None:
    tcp, udp = listeners
    tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
    spec = make_spec(tmp_path)

    def body() -> dict[str, object]:
        apply_early(spec)
        with open("/proc/self/net/dev", encoding="utf-8") as fh:
            interfaces = [line.split(":")[0].strip() for line in fh.readlines()[2:]]
        return {"tcp": _tcp(tcp_port), "udp": _udp(udp_port), "interfaces": interfaces}

    got = in_child(body)
    assert got["tcp"] == got["udp"] == errno.EPERM  # seccomp refuses the socket itself
    assert got["interfaces"] == ["lo"]  # and the namespace is empty anyway
    assert not _arrived(tcp) and not _arrived(udp)


@pytest.mark.timeout(30)
def test_the_empty_namespace_alone_blocks_the_network(
    tmp_path: Path, listeners: tuple[socket.socket, socket.socket]
) -> None:
    tcp, udp = listeners
    spec = make_spec(tmp_path, disable=["seccomp", "landlock"])

    def body() -> dict[str, object]:
        reports = apply_early(spec)
        return {
            "netns": reports_by_name(reports)["netns"].to_dict(),
            "tcp": _tcp(tcp.getsockname()[1]),
            "udp": _udp(udp.getsockname()[1]),
            "verified": reports_by_name(verify(spec, reports))["netns"].to_dict(),
        }

    got = in_child(body)
    assert got["netns"]["active"] and got["verified"]["active"], got
    assert got["tcp"] == got["udp"] == errno.ENETUNREACH  # loopback is down in the new namespace
    assert not _arrived(tcp) and not _arrived(udp)


@pytest.mark.timeout(30)
def test_landlock_alone_blocks_tcp_and_abstract_sockets_but_not_udp(
    tmp_path: Path, listeners: tuple[socket.socket, socket.socket]
) -> None:
    try:
        abi = landlock_abi.abi_version()
    except OSError as exc:
        pytest.skip(f"no Landlock on this kernel: {exc}")
    if abi < 6:
        pytest.skip(f"Landlock ABI {abi}: TCP rules need 4, abstract-socket scoping 6")
    tcp, udp = listeners
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0ob-sandbox-test-{os.getpid()}"
    abstract.bind(name)
    abstract.listen(1)
    spec = make_spec(tmp_path, disable=["netns", "seccomp"])

    def body() -> dict[str, object]:
        reports = apply_early(spec)

        def connect_abstract() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(name)

        return {
            "tcp": _tcp(tcp.getsockname()[1]),
            "udp": _udp(udp.getsockname()[1]),
            "abstract": errno_of(connect_abstract),
            "verified": [r.to_dict() for r in verify(spec, reports)],
        }

    try:
        got = in_child(body)
        assert got["tcp"] == errno.EACCES and not _arrived(tcp)
        assert got["abstract"] == errno.EPERM and not _arrived(abstract)
        # Landlock does not cover UDP: that is what the namespace and seccomp are for.
        assert got["udp"] == 0 and _arrived(udp)
        verified = reports_by_name(got["verified"])
        assert verified["landlock"]["active"], verified["landlock"]
        assert verified["netns"]["detail"] == verified["seccomp"]["detail"] == "disabled by config"
    finally:
        abstract.close()
