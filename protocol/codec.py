"""Frames ⇄ envelopes: msgpack with size limits, validated into pydantic models, never pickle.

`decode` raises only `DecodeError` (or its subclass `VersionMismatch`), whatever the bytes; receive loops
catch that one type, count it, log it and drop the frame.
"""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import ValidationError

from protocol.envelope import Envelope
from protocol.messages import MESSAGE_TYPES, TYPE_NAMES, Body
from protocol.version import MAX_FRAME_BYTES, PROTOCOL_VERSION


class DecodeError(ValueError):
    """A frame that is not a valid message of our protocol."""


class VersionMismatch(DecodeError):
    """A well-formed envelope of another protocol version; the peer deserves a clear answer."""

    def __init__(self, version: object) -> None:
        super().__init__(f"protocol version mismatch: peer speaks v{version!r}, we speak v{PROTOCOL_VERSION}")
        self.version = version


def encode(body: Body, *, id: str | None = None, ts: float | None = None) -> bytes:
    """Wrap `body` in the envelope and pack it."""
    env = Envelope(body) if id is None and ts is None else Envelope(body, **_kw(id, ts))
    return pack_envelope(env)


def _kw(id: str | None, ts: float | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if id is not None:
        kw["id"] = id
    if ts is not None:
        kw["ts"] = ts
    return kw


def pack_envelope(env: Envelope) -> bytes:
    """Pack an envelope; the body type decides the `type` field."""
    return msgpack.packb(
        {
            "v": PROTOCOL_VERSION,
            "type": TYPE_NAMES[type(env.body)],
            "id": env.id,
            "ts": env.ts,
            "body": env.body.model_dump(mode="python"),
        },
        use_bin_type=True,
    )


def unpack_map(frame: bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """Unpack one msgpack map with every size limit bounded by the frame size; any failure → DecodeError."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise DecodeError(f"frame is {type(frame).__name__}, not bytes")
    if len(frame) > max_bytes:
        raise DecodeError(f"frame of {len(frame)} bytes exceeds the {max_bytes}-byte limit")
    try:
        obj = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=100_000,
            max_map_len=100_000,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types for hostile input; all mean the same here
        raise DecodeError(f"not msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"frame is a msgpack {type(obj).__name__}, not a map")
    return obj


def decode(frame: bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> Envelope:
    """Validate a frame into an `Envelope`, or raise `DecodeError` saying why not."""
    obj = unpack_map(frame, max_bytes=max_bytes)
    version = obj.get("v")
    if version != PROTOCOL_VERSION:
        if "type" in obj and "body" in obj:
            raise VersionMismatch(version)
        raise DecodeError("frame has no protocol envelope")
    type_name = obj.get("type")
    model = MESSAGE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if model is None:
        raise DecodeError(f"unknown message type {str(type_name)[:64]!r}")
    msg_id, ts, body = obj.get("id"), obj.get("ts"), obj.get("body")
    if not isinstance(msg_id, str) or len(msg_id) > 128:
        raise DecodeError("envelope id must be a string of at most 128 characters")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        raise DecodeError("envelope ts must be a number")
    if not isinstance(body, dict):
        raise DecodeError("envelope body must be a map")
    if len(obj) != 5:
        raise DecodeError("envelope has unexpected keys")
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise DecodeError(f"invalid {type_name} body: {where}: {first['msg']}") from None
    return Envelope(parsed, id=msg_id, ts=float(ts))
