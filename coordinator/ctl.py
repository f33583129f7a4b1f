"""`ob-ctl`: ask the coordinator how things are, and tell it to retry or release jobs.

    ob-ctl [--state-dir DIR | --config FILE] workers [--json]
    ob-ctl [--state-dir DIR | --config FILE] status [--json | --watch]
    ob-ctl [--state-dir DIR | --config FILE] health
    ob-ctl [--state-dir DIR | --config FILE] jobs [--state S] [--bucket B] [--limit N] [--json]
    ob-ctl [--state-dir DIR | --config FILE] errors [--since 1h] [--category C] [--limit N] [--json]
    ob-ctl [--state-dir DIR | --config FILE] retry JOB_ID | --failed | --quarantined
    ob-ctl [--state-dir DIR | --config FILE] quarantine [list | release JOB_ID]
    ob-ctl [--state-dir DIR | --config FILE] scale N
    ob-ctl [--state-dir DIR | --config FILE] restart-worker SLOT
    ob-ctl [--state-dir DIR | --config FILE] drain | resume
    ob-ctl [--state-dir DIR | --config FILE] breaker [list | reset SLOT]
    ob-ctl [--state-dir DIR | --config FILE] errors stats [--since 24h] | errors resolve ID...
    ob-ctl [--state-dir DIR | --config FILE] report [--since 24h] [--group-by bucket|skill|type]
    ob-ctl [--state-dir DIR | --config FILE] metrics
    ob-ctl [--state-dir DIR | --config FILE] config --for FILE [--json]
    ob-ctl [--state-dir DIR | --config FILE] reload | bucket [list | add DIR | remove NAME]
    ob-ctl [--state-dir DIR | --config FILE] reload
    ob-ctl [--state-dir DIR | --config FILE] stop [--timeout S]
    ob-ctl [--state-dir DIR | --config FILE] bucket [list | remove NAME_OR_DIR [--cancel]]
    ob-ctl [--state-dir DIR | --config FILE] bucket add DIR [--name N] [--patterns GLOB ...]
                                                            [--ignore GLOB ...] [--output DIR] [--create]

`jobs`, `errors` and `quarantine list` read `<state-dir>/queue.db` in this process (WAL lets a reader look
beside the live coordinator), so they also work with the service stopped; everything else is a request on
the coordinator's control socket. Each command is a module in `coordinator.commands`.

Exit codes, in the LSB habit supervisorctl users know:

    0  answered (and, for `workers` and `status`, every worker slot is running)
    1  the request was refused or failed
    2  bad usage or a bad config
    3  `workers` / `status`: a worker slot is not running (restarting, failed or stopped)
    4  nobody to ask: no coordinator answers, or no queue database to read

`ob-ctl stop` answers 0 when the coordinator has exited, or was not running, and 1 when it is still running
after `stop --timeout S` (ob-ctl's own `--timeout`, before the command, bounds the wait for an answer).

`ob-ctl health` has its own, for cron jobs and container health checks: 0 healthy, 1 degraded,
2 unhealthy, and 4 for anything that kept it from finding out (no coordinator, a bad config). A liveness
probe that should tolerate `degraded` can run `ob-ctl health; test $? -le 1`. A command module may say its
own exit code (`exit_code(result)`).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import zmq

from coordinator.commands import CLI
from coordinator.queries import NoQueue
from protocol.codec import DecodeError
from protocol.control import decode_reply, encode_request

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


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


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`ob-ctl jobs: argument --limit: ...`) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _add_command(sub: Any, name: str, module: ModuleType, *, nested: bool = False) -> None:
    cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
    _common_options(cmd, nested=nested)
    cmd.set_defaults(_module=module, _wire=getattr(module, "WIRE", name))
    if hasattr(module, "add_arguments"):
        module.add_arguments(cmd)
    actions = {} if nested else getattr(module, "ACTIONS", {})
    if actions:
        inner = cmd.add_subparsers(dest="_action", metavar="ACTION")
        for action, target in actions.items():
            if target is None:  # the command itself, spelled out (`quarantine list`)
                _common_options(inner.add_parser(action, help=module.HELP), nested=True)
            else:
                _add_command(inner, action, target, nested=True)


def _common_options(cmd: argparse.ArgumentParser, *, nested: bool) -> None:
    # SUPPRESS keeps a value given higher up (`ob-ctl --state-dir D quarantine --json list`): argparse copies
    # every default of a subparser over what its parent already parsed.
    json_default = argparse.SUPPRESS if nested else False
    cmd.add_argument("--json", action="store_true", default=json_default, help="print JSON for scripts")
    cmd.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = _Parser(prog="ob-ctl", description="Ask an Open Buckets coordinator, or read its queue.")
    parser.add_argument(
        "--state-dir", type=Path, help="the coordinator's state dir (default: from the config)"
    )
    parser.add_argument("--config", type=Path, help="read the state dir from this config")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in CLI.items():
        _add_command(sub, name, module)
    return parser


#: Options of ob-ctl itself; every other argument a command parsed goes into its control request.
_OWN_OPTIONS = frozenset({"state_dir", "config", "timeout", "json", "command"})


def _request_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in _OWN_OPTIONS and not k.startswith("_")}


def _watch(state_dir: Path, args: argparse.Namespace) -> int:
    """`status --watch`: the live view (coordinator.commands.live_view)."""
    from coordinator.commands.live_view import watch

    if args.json:
        print("ob-ctl: status: --watch is for people, --json for scripts: give one of them", file=sys.stderr)
        return EXIT_USAGE
    try:
        ask = lambda command: request(state_dir, command, timeout_s=args.timeout)  # noqa: E731
        return watch(ask, state_dir, frames=args.frames)
    except NoCoordinator as exc:
        print(f"ob-ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RuntimeError as exc:
        print(f"ob-ctl: status: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ob-ctl` script."""
    args = build_parser().parse_args(argv)
    module: ModuleType = args._module
    from coordinator.config import ConfigError

    # `health` answers 0/1/2 for healthy/degraded/unhealthy, so its own failures must not look like a
    # state: every one is 4 ("could not find out").
    health = args._wire == "health"
    try:
        state_dir = _state_dir(args)
    except ConfigError as exc:
        print(f"ob-ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if health else EXIT_USAGE
    if getattr(args, "watch", False):
        return _watch(state_dir, args)
    try:
        if hasattr(module, "local"):
            result = module.local(state_dir, args)
        else:
            result = request(state_dir, args._wire, _request_args(args), timeout_s=args.timeout)
    except (NoCoordinator, NoQueue) as exc:
        print(f"ob-ctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (RuntimeError, sqlite3.Error) as exc:
        print(f"ob-ctl: {args._wire}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if health else EXIT_FAILED
    try:
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            print(module.render(result))
    except BrokenPipeError:  # `ob-ctl jobs | head -1`
        sys.stderr.close()
    exit_code = getattr(module, "exit_code", None)
    return int(exit_code(result)) if exit_code is not None else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
