"""Control commands, one module each: what the coordinator answers (`handle`) and how `ob-ctl` shows it
(`render`). `COMMANDS` maps the name on the wire to its module."""

from __future__ import annotations

from types import ModuleType

from coordinator.commands import status, workers

COMMANDS: dict[str, ModuleType] = {"workers": workers, "status": status}
