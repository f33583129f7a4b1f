"""`ob-worker` / `python -m worker`: parse arguments and run one worker process."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point; the coordinator spawns this with its slot, generation and endpoint."""
    parser = argparse.ArgumentParser(
        prog="ob-worker", description="Open Buckets worker (spawned by the coordinator)"
    )
    parser.add_argument(
        "--endpoint", required=True, help="the coordinator's ROUTER, e.g. ipc:///x/run/workers.sock"
    )
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--generation", type=int, required=True)
    parser.add_argument(
        "--parent-pid", type=int, default=0, help="exit at once if our parent is not this pid"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-json", action="store_true")
    parser.add_argument("--nice", type=int, default=0, help="lower our CPU priority by this much, at once")
    args = parser.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)

    from worker.lifeline import bind_to_parent

    if not bind_to_parent(args.parent_pid):
        return 3
    from worker.logsetup import setup_logging
    from worker.main import WorkerLoop

    setup_logging(args.log_level, json=args.log_json, name=f"worker {args.slot}.{args.generation}")
    return WorkerLoop(args.endpoint, args.slot, args.generation).run()


if __name__ == "__main__":
    sys.exit(main())
