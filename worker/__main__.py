"""`ob-worker` / `python -m worker`: parse arguments and run one worker process."""

from __future__ import annotations

import argparse
import os
import sys

#: Exit code of a worker that could not build a base layer of its sandbox.
EXIT_NO_SANDBOX = 78  # sysexits.h EX_CONFIG: cannot run here; the coordinator fails the slot at once


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

    if args.probe:
        if args.sandbox is None:
            parser.error("--probe needs --sandbox")
        return _probe(args.sandbox)

    from worker.lifeline import bind_to_parent

    if not bind_to_parent(args.parent_pid):
        return 3
    from worker.logsetup import setup_logging

    name = f"worker {args.slot}.{args.generation}"
    setup_logging(args.log_level, json=args.log_json, name=name, quiet_stdio=True)
    if args.sandbox is None:
        from worker.main import WorkerLoop

        return WorkerLoop(args.endpoint, args.slot, args.generation).run()
    return _sandboxed(args)


def _sandboxed(args: argparse.Namespace) -> int:
    """Build the sandbox before anything starts a thread, then run."""
    from loguru import logger

    from protocol.sandbox import SandboxSpec
    from worker.main import WorkerLoop  # imported before the sandbox: little is left to import under it
    from worker.sandbox import SandboxError, apply_early

    try:
        spec = SandboxSpec.from_json(args.sandbox)
        reports = apply_early(spec)
    except (SandboxError, ValueError) as exc:
        logger.error("cannot build the sandbox: {}", exc)
        return EXIT_NO_SANDBOX
    return WorkerLoop(args.endpoint, args.slot, args.generation, sandbox=(spec, reports)).run()


def _probe(spec_json: str) -> int:
    """`--probe`: build the whole sandbox, verify it, print the reports as one JSON line, exit. Lean on
    purpose (no logging library, no message models): every coordinator start waits for it."""
    import json

    from protocol.sandbox import SandboxSpec
    from worker.sandbox import SandboxError, apply_early, apply_late, verify

    try:
        spec = SandboxSpec.from_json(spec_json)
        reports = apply_early(spec)
    except (SandboxError, ValueError) as exc:
        print(f"cannot build the sandbox: {exc}", file=sys.stderr)
        return EXIT_NO_SANDBOX
    late = apply_late(spec)
    reports = verify(spec, [late if r.name == late.name else r for r in reports])
    print(json.dumps([r.to_dict() for r in reports]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
