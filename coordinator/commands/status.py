"""`ob-ctl status`: uptime, buckets, workers by state, jobs by state."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from coordinator.commands.table import human_seconds

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "uptime, buckets, workers by state and jobs by state"


#: Slot states that mean a worker is not running (LSB exit code 3, as `supervisorctl status` has it).
NOT_RUNNING = frozenset({"backoff", "failed", "stopped"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--watch`: the live view."""
    parser.add_argument(
        "--watch",
        action="store_true",
        help="a live view refreshed every second (uptime, jobs, queue, errors, workers); Ctrl-C to leave",
    )
    parser.add_argument("--frames", type=int, default=None, help=argparse.SUPPRESS)  # tests: stop after N


def service_health(service: Service) -> tuple[str, list[str]]:
    """(healthy | degraded | unhealthy, the reasons): what `status` and `health` report."""
    sup = service.supervisor
    return service.health.rollup(
        (slot.state for slot in sup.slots),
        open_breakers=[s.index for s in sup.slots if s.breaker.state.value != "closed"],
        fleet_paused=sup.fleet.reason if sup.fleet.paused else None,
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """The service's overall picture."""
    sup = service.supervisor
    health, reasons = service_health(service)
    return {
        "health": health,
        "reasons": reasons,
        "pid": service.pid,
        "uptime_s": round(service.clock() - service.started_at, 3),
        "state_dir": str(service.state_dir),
        "stopping": sup.stopping,
        "dispatch": "paused" if sup.paused is not None or sup.fleet.paused else "running",
        "paused_reason": sup.paused or (sup.fleet.reason if sup.fleet.paused else None),
        "balancer": sup.balancer.name,
        "alerts": service.telemetry.alerts.rows() if hasattr(service, "telemetry") else [],
        "fleet": sup.fleet.row(service.clock()),
        "buckets": [
            {"name": b.name, "path": str(b.path), "output": str(service.config.bucket_output(b))}
            for b in service.buckets
        ],
        # Queued jobs held back, by bucket: removed buckets' (until one of that name returns), and new ones'
        # (until every worker's sandbox reaches them).
        "parked": service.jobs.parked(),
        "workers": {k: v for k, v in sup.counts().items() if v} | {"total": len(sup.slots)},
        "spares": {"total": len(sup.spares), "ready": sum(s.state.value == "ready" for s in sup.spares)},
        "jobs": service.jobs.counts(),
        "watcher": dict(service.watcher.stats),
        "protocol": dict(sup.stats),
        "records_written": service.records.written,
        "recovery": vars(service.recovery),
    }


def render(result: dict[str, Any]) -> str:
    """The picture as a few readable lines."""
    workers = ", ".join(f"{n} {k}" for k, n in result["workers"].items() if k != "total")
    watcher = result["watcher"]
    jobs = ", ".join(f"{n} {k}" for k, n in result["jobs"].items())
    lines = [
        f"health       {result['health']}" + "".join(f"\n             - {r}" for r in result["reasons"]),
        f"coordinator  pid {result['pid']}, up {human_seconds(result['uptime_s'])}"
        + (" (stopping)" if result["stopping"] else ""),
        f"state dir    {result['state_dir']}",
        f"workers      {result['workers']['total']}: {workers}",
        f"dispatch     {result['dispatch']}"
        + (f" ({result['paused_reason']})" if result.get("paused_reason") else "")
        + f", balancer {result['balancer']}",
        f"jobs         {jobs}",
        f"watcher      {watcher.get('rejected', 0)} rejected, {watcher.get('ignored', 0)} ignored",
    ]
    parked = dict(result.get("parked", {}))
    for bucket in result["buckets"]:
        held = parked.pop(bucket["name"], 0)
        lines.append(
            f"bucket       {bucket['name']}: {bucket['path']} -> {bucket['output']}"
            + (f" ({held} queued job(s) parked)" if held else "")
        )
    for name, held in parked.items():
        lines.append(f"parked       {held} queued job(s) of removed bucket {name}")
    return "\n".join(lines)


def exit_code(result: dict[str, Any]) -> int:
    """3 when a worker slot is not running (restarting, failed, stopped), else 0."""
    return 3 if any(result["workers"].get(state) for state in NOT_RUNNING) else 0
