"""Supervision with real processes: killed, stopped and orphaned workers; hostile frames on both sockets."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import msgpack
import psutil
import pytest
import zmq

from protocol.codec import decode
from protocol.messages import Error
from tests.harness import RunningService, poll_until, wait_for

pytestmark = pytest.mark.timeout(120)


def drop(bucket: Path, n: int, prefix: str = "f", size: int = 200) -> None:
    for i in range(n):
        (bucket / f"{prefix}{i}.txt").write_bytes((f"{prefix} {i} " * size).encode())


def test_sigkilled_worker_is_replaced_and_every_file_still_gets_its_note(scratch: Path) -> None:
    with RunningService(scratch, workers=4) as svc:
        svc.wait_ready(4)
        drop(svc.bucket, 400, size=2000)
        victim: dict = {}

        def someone_busy() -> bool:
            busy = [r for r in svc.workers() if r["state"] == "busy"]
            if busy:
                victim.update(busy[0])
            return bool(busy)

        wait_for(someone_busy, 30, "a busy worker")
        os.kill(victim["pid"], signal.SIGKILL)

        def replaced() -> bool:
            row = svc.workers()[victim["slot"]]
            return row["pid"] != victim["pid"] and row["state"] in ("ready", "busy") and row["restarts"] == 1

        wait_for(replaced, 20, "the killed worker's replacement")
        counts = svc.wait_terminal(400, timeout=90)
        assert counts["done"] == 400, counts
        assert svc.notes_count() == 400
        assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == "zombie"
        assert svc.stop() == 0


def test_stopped_worker_is_detected_within_the_liveness_window_and_replaced(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        rows = svc.wait_ready(2)
        victim = rows[0]
        os.kill(victim["pid"], signal.SIGSTOP)
        stopped_at = time.monotonic()
        # liveness 3 x 0.5 s = 1.5 s of silence, then SIGTERM, 1 s grace, SIGKILL.
        wait_for(lambda: svc.workers()[0]["pid"] != victim["pid"], 15, "the stopped worker's replacement")
        assert time.monotonic() - stopped_at < 8
        wait_for(lambda: svc.workers()[0]["state"] == "ready", 15, "the replacement to be ready")
        assert "process is stopped" in svc.log()
        drop(svc.bucket, 10)
        assert svc.wait_terminal(10, timeout=30)["done"] == 10
        assert svc.stop() == 0


def test_a_file_that_kills_its_worker_twice_is_quarantined(scratch: Path) -> None:
    extra = "\n[jobs]\nmax_input_bytes = 8589934592\n"
    with RunningService(scratch, workers=1, extra_config=extra) as svc:
        svc.wait_ready(1)
        svc.kill_holder_twice("poison.bin")
        wait_for(lambda: svc.status()["jobs"]["quarantined"] == 1, 30, "the job to be quarantined")
        (error,) = svc.records_of("ERROR")
        assert error["category"] == "WorkerCrash"
        assert error["error"]["name"] == "Quarantined"
        assert "SIGKILL" in error["error"]["message"] and error["error"]["code"] == "SIGKILL"
        assert error["filePath"].endswith("poison.bin")
        drop(svc.bucket, 3)
        wait_for(lambda: svc.status()["jobs"]["done"] == 3, 30, "later files processed")
        assert svc.stop() == 0


def test_workers_exit_by_themselves_when_the_coordinator_is_sigkilled(scratch: Path) -> None:
    svc = RunningService(scratch, workers=3)
    pids = [r["pid"] for r in svc.wait_ready(3)]
    svc.kill()
    assert poll_until(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=10), (
        "workers outlived coordinator"
    )


def test_garbage_on_both_sockets_leaves_the_coordinator_healthy(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        ctx = zmq.Context()
        try:
            workers_sock = f"ipc://{svc.state / 'run' / 'workers.sock'}"
            control_sock = f"ipc://{svc.state / 'run' / 'control.sock'}"
            garbage = [
                b"",
                b"\xc1\xc1",
                os.urandom(64),
                msgpack.packb([1, 2]),
                msgpack.packb({"v": 1, "type": "RESULT"}),
            ]
            for identity in (b"intruder", b"0.1", b"99.1", b"0.999"):
                dealer = ctx.socket(zmq.DEALER)
                dealer.setsockopt(zmq.LINGER, 2000)  # deliver before closing
                dealer.setsockopt(zmq.ROUTING_ID, identity)
                dealer.connect(workers_sock)
                for frame in garbage:
                    dealer.send(frame)
                dealer.send_multipart([b"a", b"b", b"c"])
                dealer.close()
            # Oversized: libzmq (MAXMSGSIZE) drops the connection that sends it.
            big = ctx.socket(zmq.DEALER)
            big.setsockopt(zmq.LINGER, 2000)
            big.connect(workers_sock)
            big.send(b"\x00" * (5 * 1024 * 1024))
            big.close()
            # A peer speaking another protocol version on a live slot's identity is answered clearly.
            raw = ctx.socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 2000)
            raw.connect(control_sock)
            for frame in garbage:
                raw.send(frame)
                raw.send_multipart([b"", frame])
            raw.close()
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            req.setsockopt(zmq.RCVTIMEO, 5000)
            req.connect(control_sock)
            req.send(msgpack.packb({"v": 1, "command": "no-such-command"}))
            reply = msgpack.unpackb(req.recv())
            assert reply["ok"] is False and "unknown command" in reply["error"]
            req.close()
        finally:
            ctx.term()
        wait_for(
            lambda: svc.status()["protocol"]["bad_frames"] + svc.status()["protocol"]["unknown_peers"] > 0,
            10,
            "bad frames counted",
        )
        drop(svc.bucket, 20)
        assert svc.wait_terminal(20, timeout=30)["done"] == 20
        assert all(r["state"] in ("ready", "busy") for r in svc.workers())
        assert svc.proc.poll() is None
        assert svc.stop() == 0


def test_a_peer_of_another_protocol_version_gets_a_clear_error(scratch: Path) -> None:
    with RunningService(scratch, workers=1) as svc:
        live = svc.wait_ready(1)[0]
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.RCVTIMEO, 5000)
            dealer.setsockopt(zmq.ROUTING_ID, b"from-the-future")
            dealer.connect(f"ipc://{svc.state / 'run' / 'workers.sock'}")
            dealer.send(msgpack.packb({"v": 2, "type": "READY", "id": "1", "ts": 1.0, "body": {}}))
            answer = decode(dealer.recv()).body
            dealer.close()
        finally:
            ctx.term()
        assert isinstance(answer, Error) and answer.category == "Protocol"
        assert "protocol version mismatch" in answer.message and "v2" in answer.message
        assert svc.status()["protocol"]["version_mismatches"] == 1
        assert svc.workers()[0]["pid"] == live["pid"]  # nobody else was disturbed
        assert svc.stop() == 0
