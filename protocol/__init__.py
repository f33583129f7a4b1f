"""The contract between the coordinator and its workers.

Both sides import this package; it imports neither of them. It holds the protocol version, the message
models (pydantic), the versioned envelope and the msgpack codec that turns frames into models and back.

Importing the package itself is cheap: `protocol.sandbox` alone is what a worker's start-up sandbox probe
needs, and building every message model takes a tenth of a second. So the codec is imported on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROTOCOL_VERSION", "DecodeError", "decode", "encode"]


def __getattr__(name: str) -> Any:
    if name == "PROTOCOL_VERSION":
        from protocol.version import PROTOCOL_VERSION

        return PROTOCOL_VERSION
    if name in ("DecodeError", "decode", "encode"):
        from protocol import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'protocol' has no attribute {name!r}")
