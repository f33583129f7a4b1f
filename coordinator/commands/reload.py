"""`ob-ctl reload`: what SIGHUP does, with the answer in the terminal: re-read the config file the service
started from (its command-line flags again over it) and apply what can change at run time.

supervisorctl has `reread` + `update`, Circus `reloadconfig`; here one command, since a reload never
restarts a healthy worker in a hurry (changed workers are replaced in turn, each after its job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from coordinator.commands.common import CommandError
from coordinator.live import Refused

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "re-read the config file and apply what can change without a restart (like SIGHUP)"


def handle(service: Service, args: dict[str, Any]) -> dict[str, list[str]]:
    """Reload; a refused config is the reply's error (and one line in the coordinator's log)."""
    try:
        return service.reload("ob-ctl reload")
    except Refused as exc:
        raise CommandError(f"config reload refused: {exc}") from None


def render(result: dict[str, list[str]]) -> str:
    """What changed, then what waits for a restart."""
    lines = ["config reloaded:" + ("" if result["changes"] else " nothing changed")]
    lines += [f"  {change}" for change in result["changes"]]
    lines += [f"not applied: {kept}" for kept in result["kept"]]
    return "\n".join(lines)
