"""The control plane between `ob-ctl` and the coordinator: one request, one reply, msgpack maps.

Request: `{"v": 1, "command": str, "args": {...}}`.
Reply: `{"v": 1, "ok": bool, "result": ..., "error": str}`.
Kept apart from the worker messages: a control client is a person's tool, not a peer in the job protocol.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.codec import DecodeError, unpack_map
from protocol.version import PROTOCOL_VERSION

MAX_CONTROL_BYTES = 1024 * 1024


def encode_request(command: str, args: dict[str, Any] | None = None) -> bytes:
    """Pack one control request."""
    return msgpack.packb({"v": PROTOCOL_VERSION, "command": command, "args": args or {}}, use_bin_type=True)


def decode_request(frame: bytes) -> tuple[str, dict[str, Any]]:
    """Unpack and check a control request; raises DecodeError on anything else."""
    obj = unpack_map(frame, max_bytes=MAX_CONTROL_BYTES)
    if obj.get("v") != PROTOCOL_VERSION:
        raise DecodeError(f"control protocol version {obj.get('v')!r} is not {PROTOCOL_VERSION}")
    command, args = obj.get("command"), obj.get("args", {})
    if not isinstance(command, str) or not command or len(command) > 64:
        raise DecodeError("control request needs a command name")
    if not isinstance(args, dict):
        raise DecodeError("control request args must be a map")
    return command, args


def encode_reply(ok: bool, result: Any = None, error: str | None = None) -> bytes:
    """Pack one control reply."""
    return msgpack.packb(
        {"v": PROTOCOL_VERSION, "ok": ok, "result": result, "error": error}, use_bin_type=True, default=str
    )


def decode_reply(frame: bytes) -> dict[str, Any]:
    """Unpack a control reply (the client trusts its own coordinator, but still bounds the size)."""
    obj = unpack_map(frame, max_bytes=64 * 1024 * 1024)
    if obj.get("v") != PROTOCOL_VERSION or "ok" not in obj:
        raise DecodeError("not a control reply of this version")
    return obj
