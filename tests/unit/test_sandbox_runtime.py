"""Python, its tools and ZeroMQ keep working inside the full sandbox (both seccomp stages in)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import zmq

from tests.unit.test_sandbox_support import NEEDLE, Child, errno_of, make_spec, reports_by_name
from worker.sandbox import apply_early, apply_late

#: A stdlib module nothing here imports: loading it proves lazy imports still work inside.
LAZY_MODULE = "wave"


@pytest.mark.timeout(30)
def test_python_and_its_tools_keep_working(tmp_path: Path) -> None:
    assert LAZY_MODULE not in sys.modules
    spec = make_spec(tmp_path)
    bucket_file = str(Path(spec.read[0]) / "hello.txt")
    log_file = Path(spec.write[0]) / "worker.log"

    def body() -> dict[str, object]:
        reports = apply_early(spec)
        late = apply_late(spec)
        import importlib

        import psutil
        from loguru import logger

        logger.add(str(log_file), format="{message}")
        logger.info("logged from inside")  # to stderr (the default sink) and to the file
        results: list[int] = []
        thread = threading.Thread(target=lambda: results.append(len(os.urandom(16))))
        thread.start()
        thread.join()
        with tempfile.NamedTemporaryFile(delete=False) as tmp:
            tmp.write(b"scratch data")
        (Path(spec.write[0]) / "note.md").write_text("# a note\n")
        return {
            "active": sorted(r.name for r in [*reports, late] if r.active),
            "lazy": importlib.import_module(LAZY_MODULE).__name__,
            "sh": subprocess.run(["/bin/sh", "-c", "echo hi"], capture_output=True, text=True).stdout,
            "rg": subprocess.run(
                ["/usr/bin/rg", "-uuu", "--no-config", "--", "needle", bucket_file],
                capture_output=True,
                text=True,
            ).stdout,
            "grep": subprocess.run(
                ["/usr/bin/grep", "needle", bucket_file], capture_output=True, text=True
            ).stdout,
            "rss": psutil.Process().memory_info().rss,
            "thread": results,
            "tempfile": os.path.dirname(tmp.name),
        }

    got = Child(body).result()
    assert len(got["active"]) >= 9
    assert got["lazy"] == LAZY_MODULE
    assert got["sh"] == "hi\n"
    assert got["rg"] == got["grep"] == f"{NEEDLE}\n"
    assert got["rss"] > 0 and got["thread"] == [16]
    assert got["tempfile"] == spec.scratch
    assert (Path(spec.write[0]) / "note.md").read_text() == "# a note\n"
    assert log_file.read_text() == "logged from inside\n"


@pytest.mark.timeout(30)
def test_a_zmq_connection_survives_both_stages(tmp_path: Path) -> None:
    ipc_dir = tmp_path / "ipc"  # outside every Landlock rule: connecting to a path-based socket still works
    ipc_dir.mkdir()
    endpoint = f"ipc://{ipc_dir}/router.sock"
    spec = make_spec(tmp_path)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoint)

    def body() -> dict[str, object]:
        early = reports_by_name(apply_early(spec))
        inner = zmq.Context()
        dealer = inner.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.rcvtimeo = dealer.sndtimeo = 10_000
        dealer.connect(endpoint)
        dealer.send(b"ready")
        first = dealer.recv()
        late = apply_late(spec)
        dealer.send(b"after-late")
        second = dealer.recv()
        out = {
            "early": {name: r.active for name, r in early.items()},
            "late": late.to_dict(),
            "replies": [first.decode(), second.decode()],
            "unix": errno_of(lambda: socket.socket(socket.AF_UNIX).close()),
        }
        dealer.close()
        inner.term()
        return out

    child = Child(body)
    try:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(child.fileno(), zmq.POLLIN)
        served = 0
        while served < 2:  # answer the child until both messages are in (or it gives up and exits)
            events = dict(poller.poll(20_000))
            if router in events:
                ident, message = router.recv_multipart()
                router.send_multipart([ident, b"re:" + message])
                served += 1
            elif child.fileno() in events or not events:
                break
        got = child.result()
    finally:
        child.close()
        router.close()
        ctx.term()
    assert got["early"]["landlock"] and got["early"]["netns"] and got["early"]["seccomp"]
    assert got["late"]["active"], got["late"]
    assert got["replies"] == ["re:ready", "re:after-late"]
    assert got["unix"] == errno.EPERM
