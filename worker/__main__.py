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
    parser.add_argument("--endpoint", help="the coordinator's ROUTER, e.g. ipc:///x/run/workers.sock")
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--generation", type=int, default=0)
    parser.add_argument(
        "--parent-pid", type=int, default=0, help="exit at once if our parent is not this pid"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-json", action="store_true")
    parser.add_argument("--nice", type=int, default=0, help="lower our CPU priority by this much, at once")
    parser.add_argument("--sandbox", help="the SandboxSpec as JSON (the coordinator builds it)")
    parser.add_argument(
        "--probe", action="store_true", help="build the sandbox, print what was verified as JSON, exit"
    )
    args = parser.parse_args(argv)
    if args.endpoint is None and not args.probe:
        parser.error("--endpoint is required")
    if args.nice > 0:
        os.nice(args.nice)

    from worker.lifeline import bind_to_parent

    if not args.probe and not bind_to_parent(args.parent_pid):
        return 3
    from worker.logsetup import setup_logging

    name = "probe" if args.probe else f"worker {args.slot}.{args.generation}"
    setup_logging(args.log_level, json=args.log_json, name=name, quiet_stdio=not args.probe)
    if args.sandbox is None:
        if args.probe:
            parser.error("--probe needs --sandbox")
        from worker.main import WorkerLoop

        return WorkerLoop(args.endpoint, args.slot, args.generation).run()
    return _sandboxed(args)


def _sandboxed(args: argparse.Namespace) -> int:
    """Build the sandbox before anything starts a thread, then run (or, for --probe, report and exit)."""
    import json

    from loguru import logger

    from protocol.sandbox import SandboxSpec
    from worker.main import WorkerLoop  # imported before the sandbox: a lean path for lazy imports later
    from worker.sandbox import SandboxError, apply_early, apply_late, verify

    try:
        spec = SandboxSpec.model_validate_json(args.sandbox)
        reports = apply_early(spec)
    except (SandboxError, ValueError) as exc:
        logger.error("cannot build the sandbox: {}", exc)
        return 6
    if args.probe:
        late = apply_late(spec)
        reports = verify(spec, [late if r.name == late.name else r for r in reports])
        print(json.dumps([r.model_dump() for r in reports]), flush=True)
        return 0
    return WorkerLoop(args.endpoint, args.slot, args.generation, sandbox=(spec, reports)).run()


if __name__ == "__main__":
    sys.exit(main())
