"""`ob-coordinator`: start the service, or check a config without starting anything.

    ob-coordinator start [--daemon] [--workers N] [--config FILE] [--bucket DIR]... [--output DIR]
                         [--state-dir DIR]
    ob-coordinator validate-config [--config FILE] [same overrides]

Exit codes: 0 clean stop, 1 runtime failure, 2 bad configuration or usage (nothing was started).
A running service reloads its config file on SIGHUP (or `ob-ctl reload`), these flags again over it.
`start --daemon` detaches (`coordinator.daemon`) once the config is checked, and exits 0 when the daemon is
up, or with the daemon's error line: 1 when another coordinator already runs on the state dir.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from coordinator.config import Config
    from coordinator.daemon import Detached

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML config (default: ./config/openbuckets.toml, else built-in)"
    )
    parser.add_argument("--workers", type=int, help="number of worker processes")
    parser.add_argument("--bucket", type=Path, action="append", help="a directory to watch (repeatable)")
    parser.add_argument("--output", type=Path, help="where notes are written")
    parser.add_argument(
        "--state-dir", type=Path, help="queue, records, sockets and locks (default ./.openbuckets)"
    )
    parser.add_argument("--log-level", help="TRACE, DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-json", action="store_true", default=None, help="log one JSON object per line")
    parser.add_argument(
        "--status-interval",
        type=float,
        metavar="SECONDS",
        help="log a compact status line this often (0: never, the default)",
    )
    parser.add_argument(
        "--sandbox-require",
        metavar="LAYERS",
        help='sandbox layers the workers must have, comma-separated ("landlock,seccomp"), or "auto"',
    )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as dotted config overrides."""
    out: dict[str, Any] = {}
    for flag, dotted in (
        ("workers", "service.workers"),
        ("output", "service.output"),
        ("state_dir", "service.state_dir"),
        ("log_level", "service.log_level"),
        ("log_json", "service.log_json"),
        ("status_interval", "service.status_interval_s"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            out[dotted] = str(value) if isinstance(value, Path) else value
    if args.bucket:
        out["buckets"] = [{"path": str(p)} for p in args.bucket]
    require = getattr(args, "sandbox_require", None)
    if require is not None:
        names = [name.strip() for name in require.split(",") if name.strip()]
        out["sandbox.require"] = "auto" if names == ["auto"] else names
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="ob-coordinator", description="Open Buckets coordinator")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = sub.add_parser("start", help="run the service in the foreground until SIGTERM or Ctrl-C")
    _add_config_args(start)
    start.add_argument(
        "--daemon",
        action="store_true",
        help="detach once started: pid in <state-dir>/run/coordinator.pid, log in <state-dir>/logs/",
    )
    check = sub.add_parser("validate-config", help="check a config and exit (0 valid, 2 invalid)")
    _add_config_args(check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ob-coordinator` script."""
    # A SIGHUP before the service has its handler (while it imports and checks its config) would kill it
    # with the default action: ignore it until then; the reload it asked for reads the same file anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = build_parser().parse_args(argv)
    from coordinator.config import ConfigError, ignored_env, load_config
    from coordinator.paths import check_socket_paths

    for name in ignored_env():
        print(f"ob-coordinator: ignoring {name}: it names no setting", file=sys.stderr)
    overrides = overrides_from(args)
    try:
        config = load_config(args.config, overrides)
        check_socket_paths(config)
    except ConfigError as exc:
        print(f"ob-coordinator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "validate-config":
        names = ", ".join(f"{b.name}={b.path}" for b in config.buckets)
        state = config.service.state_dir
        print(f"config OK: {config.service.workers} workers, buckets {names}, state dir {state}")
        return EXIT_OK

    if args.daemon:
        from coordinator.daemon import daemonize
        from coordinator.lock import holder_pid
        from coordinator.paths import run_dir

        # Refused here, in the terminal, when we can tell at once (the daemon checks again, holding the lock).
        if holder_pid(run_dir(config.service.state_dir)) is not None:
            print(_already_running(config.service.state_dir), file=sys.stderr)
            return EXIT_FAILURE
        try:
            return daemonize(config.service.state_dir, lambda daemon: _serve(config, args, overrides, daemon))
        except OSError as exc:
            print(f"ob-coordinator: cannot start: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    return _serve(config, args, overrides, None)


def _serve(
    config: Config, args: argparse.Namespace, overrides: dict[str, Any], daemon: Detached | None
) -> int:
    """Run the service until it stops; a start-up failure is one line (on stderr, and told to the daemon's
    parent, which prints it)."""
    from coordinator.jails import SandboxUnavailable
    from coordinator.lock import StateDirBusy
    from coordinator.logsetup import WorkerLines, setup_logging
    from coordinator.schema import SchemaTooNew
    from coordinator.service import Service

    def fail(code: int, line: str) -> int:
        print(line, file=sys.stderr)
        return daemon.fail(code, line) if daemon is not None else code

    setup_logging(
        config.service.log_level,
        json=config.service.log_json,
        file=daemon.log_file if daemon is not None else None,
    )
    try:
        # The service keeps where its config came from: SIGHUP reads it again, with these flags over it.
        service = Service(config, config_path=args.config, overrides=overrides)
        if daemon is not None:
            service.on_ready = daemon.ready
            service.worker_logs.out = cast(IO[bytes], WorkerLines())  # into the rotated log, not stderr
        return service.run()
    except StateDirBusy as exc:
        if daemon is not None:  # (lost a race with another start: `start --daemon` checks before forking)
            return fail(EXIT_FAILURE, _already_running(config.service.state_dir))
        return fail(EXIT_CONFIG, f"ob-coordinator: {exc}")
    except (SchemaTooNew, SandboxUnavailable) as exc:
        return fail(EXIT_CONFIG, f"ob-coordinator: {exc}")
    except sqlite3.DatabaseError as exc:
        return fail(EXIT_FAILURE, f"ob-coordinator: queue database in {config.service.state_dir}: {exc}")
    except OSError as exc:
        return fail(EXIT_FAILURE, f"ob-coordinator: cannot start: {exc}")


def _already_running(state_dir: Path) -> str:
    """The one line of a `start --daemon` refused because a coordinator holds the state dir."""
    from coordinator.lock import holder_pid
    from coordinator.paths import run_dir

    pid = holder_pid(run_dir(state_dir))
    shown = pid if pid is not None and pid > 0 else "?"
    return f"ob-coordinator: already running (pid {shown}) on state dir {state_dir.expanduser().absolute()}"


if __name__ == "__main__":
    sys.exit(main())
