"""A real worker process against a ROUTER the test holds: the worker's side of the protocol, hostile frames
included."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from protocol.codec import decode, encode
from protocol.messages import Body, Config, Error, Execute, Limits, Ping, Pong, Ready, Result

pytestmark = pytest.mark.timeout(60)


class FakeCoordinator:
    """A bound ROUTER and one spawned worker."""

    def __init__(self, base: Path) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVTIMEO, 10_000)
        endpoint = f"ipc://{base / 'w.sock'}"
        self.router.bind(endpoint)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "--endpoint", endpoint, "--slot", "0", "--generation", "1"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def recv(self) -> Body:
        identity, frame = self.router.recv_multipart()
        assert identity == b"0.1"
        return decode(frame).body

    def recv_skipping_heartbeats(self) -> Body:
        while True:
            body = self.recv()
            if type(body).__name__ != "Heartbeat":
                return body

    def send_raw(self, *frames: bytes) -> None:
        self.router.send_multipart([b"0.1", *frames])

    def send(self, body: Body) -> None:
        self.send_raw(encode(body))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.router.close()
        self.ctx.term()


@pytest.fixture
def coordinator(scratch: Path) -> Iterator[FakeCoordinator]:
    fake = FakeCoordinator(scratch)
    try:
        yield fake
    finally:
        fake.close()


def configure(c: FakeCoordinator) -> Ready:
    ready = c.recv()
    assert isinstance(ready, Ready) and ready.slot == 0 and ready.generation == 1
    c.send(
        Config(heartbeat_interval_s=0.5, liveness=3, limits=Limits(max_input_bytes=10**6, preview_lines=5))
    )
    return ready


def test_garbage_from_the_coordinator_is_dropped_and_work_goes_on(
    coordinator: FakeCoordinator, scratch: Path
) -> None:
    configure(coordinator)
    for frame in (
        b"",
        b"\xc1",
        b"junk" * 50,
        msgpack.packb({"v": 1, "type": "EXECUTE", "id": "x", "ts": 1, "body": {}}),
    ):
        coordinator.send_raw(frame)
    coordinator.send_raw(b"two", b"parts")
    coordinator.send(Ping(nonce=42))
    pong = coordinator.recv_skipping_heartbeats()
    assert isinstance(pong, Pong) and pong.nonce == 42
    src = scratch / "in.txt"
    src.write_text("hello\nworld\n")
    job = Execute(
        job_id="j1",
        path=str(src),
        bucket="b",
        relpath="in.txt",
        output_path=str(scratch / "out" / "in.txt.obs.md"),
        deadline_s=10,
        attempt=1,
    )
    coordinator.send(job)
    result = coordinator.recv_skipping_heartbeats()
    assert isinstance(result, Result) and result.job_id == "j1" and result.facts.line_count == 2
    assert (scratch / "out" / "in.txt.obs.md").read_text().startswith("---\n")
    assert coordinator.proc.poll() is None


def test_a_bad_file_is_an_error_answer_not_a_dead_worker(coordinator: FakeCoordinator, scratch: Path) -> None:
    configure(coordinator)
    job = Execute(
        job_id="j2",
        path=str(scratch / "missing.txt"),
        bucket="b",
        relpath="missing.txt",
        output_path=str(scratch / "missing.obs.md"),
        deadline_s=10,
        attempt=1,
    )
    coordinator.send(job)
    answer = coordinator.recv_skipping_heartbeats()
    assert isinstance(answer, Error) and answer.category == "FileAccess" and answer.job_id == "j2"
    assert coordinator.proc.poll() is None


def test_a_coordinator_of_another_version_makes_the_worker_leave(coordinator: FakeCoordinator) -> None:
    configure(coordinator)
    coordinator.send_raw(msgpack.packb({"v": 9, "type": "CONFIG", "id": "1", "ts": 1.0, "body": {}}))
    assert coordinator.proc.wait(timeout=10) != 0
    assert coordinator.proc.stderr is not None
    assert b"protocol version mismatch" in coordinator.proc.stderr.read()


def test_a_silent_coordinator_makes_the_worker_exit(coordinator: FakeCoordinator) -> None:
    configure(coordinator)  # 3 liveness windows of 3 x 0.5 s, then the worker gives up on us
    assert coordinator.proc.wait(timeout=10) == 3
