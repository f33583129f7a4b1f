"""`ob-ctl workers`: one row per worker slot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.commands.status import NOT_RUNNING
from coordinator.commands.table import human_bytes, human_seconds, render_table
from protocol.sandbox import LAYER_ORDER

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = (
    "one row per worker: pid, state, circuit breaker, heartbeat age, ping, jobs, restarts, last exit code "
    "(negative: a signal), memory, CPU, sandbox, current file; exit 3 if a slot is not running"
)


def handle(service: Service, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows, as the JSON output shows them."""
    now = service.clock()
    return [slot.row(now) for slot in service.supervisor.all_slots]


def render(rows: list[dict[str, Any]]) -> str:
    """The rows as a table."""
    headers = ["slot", "pid", "state", "breaker", "beat", "ping", "done", "failed", "restarts"]
    headers += ["last_exit", "rss", "cpu", "uptime", "sandbox", "file"]
    table = [
        [
            f"{r['slot']} (spare)" if r.get("spare") else r["slot"],
            r["pid"],
            r["state"] + (f" ({r['retry_in_s']:.1f}s)" if r.get("retry_in_s") is not None else ""),
            None if r.get("spare") else breaker_summary(r.get("breaker")),
            human_seconds(r["last_heartbeat_age_s"]),
            None if r.get("ping_ms") is None else f"{r['ping_ms']:.1f}ms",
            r["jobs_done"],
            r["jobs_failed"],
            r["restarts"],
            r.get("last_exit_code"),
            human_bytes(r["rss_bytes"]),
            None if r["cpu_percent"] is None else f"{r['cpu_percent']:.0f}%",
            human_seconds(r["uptime_s"]),
            sandbox_summary(r.get("sandbox") or [], alive=r["pid"] is not None),
            r.get("current_file"),
        ]
        for r in rows
    ]
    return render_table(headers, table)


def breaker_summary(breaker: dict[str, Any] | None) -> str | None:
    """ "closed", "open (probe in 12.5s)", "half_open (probing)"."""
    if not breaker:
        return None
    state = str(breaker["state"])
    if breaker.get("retry_in_s") is not None:
        return f"{state} (probe in {breaker['retry_in_s']:.1f}s)"
    if breaker.get("probing"):
        return f"{state} (probing)"
    return state


def sandbox_summary(layers: list[str], *, alive: bool) -> str | None:
    """ "all 11" when every layer is verified, else what is missing ("no landlock,seccomp")."""
    if not alive:
        return None
    missing = [name for name in LAYER_ORDER if name not in layers]
    if not missing:
        return f"all {len(LAYER_ORDER)}"
    return "no " + ",".join(missing)


def exit_code(rows: list[dict[str, Any]]) -> int:
    """3 when a working slot has no running worker (restarting, failed, stopped), else 0."""
    return 3 if any(not r.get("spare") and r["state"] in NOT_RUNNING for r in rows) else 0
