"""The control server: answers `ob-ctl` on `ipc://<state-dir>/run/control.sock`.

A ROUTER, not a REP: a REP socket wedges in its send/receive state machine when a client sends garbage or
vanishes mid-request, while a ROUTER just drops what it cannot read. Each request is answered at once from
the loop's own state (no lock, no queue), so no command can turn another away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zmq
from loguru import logger

from coordinator.commands import COMMANDS, CommandError
from protocol.codec import DecodeError
from protocol.control import decode_request, encode_reply

if TYPE_CHECKING:
    from coordinator.service import Service


class ControlServer:
    """Reads requests from the control socket and answers them."""

    def __init__(self, sock: zmq.Socket[bytes], service: Service) -> None:
        self.sock = sock
        self.service = service
        self.bad_requests = 0

    def handle_ready(self, limit: int = 64) -> None:
        """Answer every request waiting on the socket (bounded, so a flood cannot starve the loop)."""
        for _ in range(limit):
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._one(parts)

    def _one(self, parts: list[bytes]) -> None:
        # A REQ client's request arrives as [identity, b"", payload].
        if len(parts) != 3 or parts[1] != b"":
            self.bad_requests += 1
            logger.warning("control: dropped a malformed request ({} parts)", len(parts))
            return
        identity, _, payload = parts
        try:
            command, args = decode_request(payload)
        except DecodeError as exc:
            self.bad_requests += 1
            logger.warning("control: dropped a bad request: {}", exc)
            self._reply(identity, encode_reply(False, error=f"bad request: {exc}"))
            return
        module = COMMANDS.get(command)
        if module is None:
            self._reply(identity, encode_reply(False, error=f"unknown command {command!r}"))
            return
        try:
            result: Any = module.handle(self.service, args)
            reply = encode_reply(True, result)
        except CommandError as exc:  # a refusal for the operator to read (no such job), not a bug
            reply = encode_reply(False, error=str(exc))
        except Exception as exc:  # a bug in one command must not take the service down
            logger.exception("control: command {} failed", command)
            reply = encode_reply(False, error=f"{command} failed: {exc}")
        self._reply(identity, reply)

    def _reply(self, identity: bytes, payload: bytes) -> None:
        try:
            self.sock.send_multipart([identity, b"", payload], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away; nothing to do
            logger.debug("control: reply not delivered: {}", exc)
