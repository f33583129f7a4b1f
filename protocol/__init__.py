"""The contract between the coordinator and its workers.

Both sides import this package; it imports neither of them. It holds the protocol version, the message
models (pydantic), the versioned envelope and the msgpack codec that turns frames into models and back.
"""

from protocol.codec import DecodeError, decode, encode
from protocol.version import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION", "DecodeError", "decode", "encode"]
