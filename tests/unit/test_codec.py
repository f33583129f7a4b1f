"""The codec turns any bytes into an envelope or a DecodeError, never anything else."""

from __future__ import annotations

import os
import random

import msgpack
import pytest

from protocol.codec import DecodeError, VersionMismatch, decode, encode
from protocol.messages import Execute, FileFacts, Heartbeat, Ready, Result
from protocol.version import MAX_FRAME_BYTES, PROTOCOL_VERSION


def test_round_trip_keeps_body_id_and_ts() -> None:
    body = Execute(
        job_id="j1",
        path="/b/a.txt",
        bucket="b",
        relpath="a.txt",
        output_path="/n/a.txt.obs.md",
        deadline_s=5,
        attempt=1,
    )
    env = decode(encode(body, id="abc", ts=12.5))
    assert env.body == body and env.id == "abc" and env.ts == 12.5


def test_result_with_facts_round_trips() -> None:
    facts = FileFacts(
        size=3, sha256="0" * 64, file_type="text", mime="text/plain", is_text=True, encoding="ascii"
    )
    body = Result(job_id="j2", output_path="/n/x", duration_s=0.01, facts=facts)
    assert decode(encode(body)).body == body


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"garbage" * 10,
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": PROTOCOL_VERSION}),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "NOPE", "id": "1", "ts": 1.0, "body": {}}),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "READY", "id": "1", "ts": 1.0, "body": {"slot": "x"}}),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "HEARTBEAT", "id": 5, "ts": 1.0, "body": {}}),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "HEARTBEAT", "id": "1", "ts": "x", "body": {}}),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "HEARTBEAT", "id": "1", "ts": 1.0, "body": []}),
        msgpack.packb(
            {"v": PROTOCOL_VERSION, "type": "HEARTBEAT", "id": "1", "ts": 1.0, "body": {"evil": 1}}
        ),
        msgpack.packb({"v": PROTOCOL_VERSION, "type": "HEARTBEAT", "id": "1", "ts": 1.0, "body": {}, "x": 1}),
        msgpack.packb({1: 2}),
    ],
)
def test_bad_frames_raise_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(frame)


def test_oversized_frame_is_refused_before_unpacking() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        decode(b"\x00" * (MAX_FRAME_BYTES + 1))


def test_other_version_is_a_version_mismatch() -> None:
    frame = msgpack.packb({"v": 99, "type": "READY", "id": "1", "ts": 1.0, "body": {}})
    with pytest.raises(VersionMismatch, match="v99"):
        decode(frame)


def test_random_bytes_never_escape_as_other_exceptions() -> None:
    rng = random.Random(7)
    good = encode(Ready(slot=1, generation=2, pid=3, version="x"))
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = os.urandom(rng.randrange(0, 200))
        else:  # flip bytes of a valid frame
            frame = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame)
        try:
            decode(frame)
        except DecodeError:
            pass


def test_heartbeat_defaults_are_empty() -> None:
    assert decode(encode(Heartbeat())).body == Heartbeat()


def test_a_path_that_is_not_utf8_crosses_the_wire_unchanged() -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # lone surrogates: msgpack's str cannot carry this
    body = Execute(
        job_id="1",
        path=f"/b/{name}",
        bucket="b",
        relpath=name,
        output_path=f"/n/{name}.obs.md",
        deadline_s=5,
        attempt=1,
    )
    out = decode(encode(body)).body
    assert isinstance(out, Execute)
    assert (out.path, out.relpath, out.output_path) == (body.path, body.relpath, body.output_path)
    plain = decode(encode(Execute(job_id="2", path="/b/é.txt", bucket="b", relpath="é.txt",
                                  output_path="/n/x", deadline_s=5, attempt=1))).body  # fmt: skip
    assert isinstance(plain, Execute) and plain.relpath == "é.txt"
