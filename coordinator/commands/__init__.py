"""Control commands, one module each.

A module the coordinator answers has `handle(service, args)`; `COMMANDS` maps its name on the wire to it.
A module `ob-ctl` offers (`CLI`) has `HELP` and `render(result)`, may add its own arguments
(`add_arguments(parser)`) and sub-actions (`ACTIONS`), and either reads the queue database in `ob-ctl`
itself (`local(state_dir, args)`, read-only, works with the service stopped) or is sent to the coordinator,
which is the queue's only writer.
"""

from __future__ import annotations

from types import ModuleType

from coordinator.commands import (
    breaker,
    breaker_reset,
    bucket,
    bucket_add,
    bucket_remove,
    config,
    drain,
    errors,
    errors_resolve,
    health,
    jobs,
    metrics,
    quarantine,
    release,
    reload,
    report,
    restart_worker,
    resume,
    retry,
    scale,
    status,
    stop,
    workers,
)
from coordinator.commands.common import CommandError

COMMANDS: dict[str, ModuleType] = {
    "workers": workers,
    "status": status,
    "health": health,
    "metrics": metrics,
    "retry": retry,
    "release": release,
    "scale": scale,
    "restart-worker": restart_worker,
    "drain": drain,
    "resume": resume,
    "breaker": breaker,
    "breaker-reset": breaker_reset,
    "reload": reload,
    "bucket": bucket,
    "bucket-add": bucket_add,
    "bucket-remove": bucket_remove,
    "config": config,
    "errors-resolve": errors_resolve,
    "stop": stop,
}

CLI: dict[str, ModuleType] = {
    "workers": workers,
    "status": status,
    "health": health,
    "metrics": metrics,
    "jobs": jobs,
    "errors": errors,
    "retry": retry,
    "quarantine": quarantine,
    "scale": scale,
    "restart-worker": restart_worker,
    "drain": drain,
    "resume": resume,
    "breaker": breaker,
    "reload": reload,
    "bucket": bucket,
    "config": config,
    "report": report,
    "stop": stop,
}

__all__ = ["CLI", "COMMANDS", "CommandError"]
