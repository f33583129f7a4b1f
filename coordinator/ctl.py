"""`ob-ctl`: ask the running coordinator how things are.

    ob-ctl [--state-dir DIR | --config FILE] workers [--json]
    ob-ctl [--state-dir DIR | --config FILE] status [--json]

Exit codes: 0 answered, 1 no coordinator (or it did not answer), 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import zmq

from coordinator.commands import COMMANDS
from protocol.codec import DecodeError
from protocol.control import decode_reply, encode_request

EXIT_OK, EXIT_NO_COORDINATOR, EXIT_USAGE = 0, 1, 2


class NoCoordinator(Exception):
    """Nobody answers on the state dir's control socket."""


def request(state_dir: Path, command: str, args: dict[str, Any] | None = None, timeout_s: float = 5.0) -> Any:
    """Send one control request and return its result; raises NoCoordinator or RuntimeError."""
    from coordinator.lock import holder_pid
    from coordinator.paths import socket_paths

    state_dir = state_dir.expanduser().absolute()
    _, control = socket_paths(state_dir)
    if holder_pid(state_dir / "run") is None or not control.exists():
        raise NoCoordinator(f"no coordinator is running for state dir {state_dir}")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    try:
        sock.connect(f"ipc://{control}")
        sock.send(encode_request(command, args))
        try:
            reply = decode_reply(sock.recv())
        except zmq.Again:
            raise NoCoordinator(
                f"the coordinator for state dir {state_dir} did not answer in {timeout_s:g}s"
            ) from None
        except DecodeError as exc:
            raise RuntimeError(f"unreadable reply: {exc}") from None
    finally:
        sock.close(linger=0)
        ctx.term()
    if not reply["ok"]:
        raise RuntimeError(reply.get("error") or "request failed")
    return reply["result"]


def _state_dir(args: argparse.Namespace) -> Path:
    if args.state_dir is not None:
        return Path(args.state_dir)
    from coordinator.config import load_config

    return load_config(args.config).service.state_dir


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="ob-ctl", description="Ask a running Open Buckets coordinator.")
    parser.add_argument(
        "--state-dir", type=Path, help="the coordinator's state dir (default: from the config)"
    )
    parser.add_argument("--config", type=Path, help="read the state dir from this config")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP)
        cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
        cmd.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ob-ctl` script."""
    args = build_parser().parse_args(argv)
    from coordinator.config import ConfigError

    try:
        state_dir = _state_dir(args)
    except ConfigError as exc:
        print(f"ob-ctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = request(state_dir, args.command, {}, timeout_s=args.timeout)
    except NoCoordinator as exc:
        print(f"ob-ctl: {exc}", file=sys.stderr)
        return EXIT_NO_COORDINATOR
    except RuntimeError as exc:
        print(f"ob-ctl: {args.command}: {exc}", file=sys.stderr)
        return EXIT_NO_COORDINATOR
    try:
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            print(COMMANDS[args.command].render(result))
    except BrokenPipeError:  # `ob-ctl workers | head -1`
        sys.stderr.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
