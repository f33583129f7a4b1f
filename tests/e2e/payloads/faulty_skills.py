"""A handler skill that fails on purpose, in chosen ways, on chosen worker slots.

The tests copy this module into a skill directory beside `faulty_plan.json` and may rewrite the plan while
the service runs (it is read on every call). The plan:

    {"rules": [{"slots": [1], "match": "boom", "action": "crash"}, ...],
     "slow_s": 0.05, "leak_mb": 64}

The first rule whose `slots` (omitted: every slot) holds this worker's slot and whose `match` (omitted:
every file) is in the file's name decides; no rule: "ok". Actions: ok, slow (sleep slow_s), crash (SIGSEGV),
hang (sleep far past any deadline), raise (a handler error: the file's fault, never the worker's), leak
(keep leak_mb more MiB for the rest of the process's life), exit78 (exit with EX_CONFIG).

A worker knows its slot from its command line (`--slot N`); a spare that took over a slot keeps its own
number, so tests that aim at a slot run without spares.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_PLAN = Path(__file__).parent / "faulty_plan.json"
_HOARD: list[bytearray] = []


def _slot() -> int:
    argv = sys.argv
    for i, arg in enumerate(argv[:-1]):
        if arg == "--slot":
            return int(argv[i + 1])
    return -1


def _action(plan: dict[str, Any], slot: int, name: str) -> str:
    for rule in plan.get("rules", []):
        if slot in rule.get("slots", [slot]) and rule.get("match", "") in name:
            return str(rule["action"])
    return "ok"


def describe(path: str, ctx: Any) -> dict[str, Any]:
    plan = json.loads(_PLAN.read_text())
    slot = _slot()
    action = _action(plan, slot, ctx.name)
    if action == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "exit78":
        os._exit(78)
    elif action == "hang":
        time.sleep(3600)
    elif action == "slow":
        time.sleep(float(plan.get("slow_s", 0.05)))
    elif action == "raise":
        raise ValueError(f"{ctx.name} is not what this handler wants")
    elif action == "leak":
        block = bytearray(int(plan.get("leak_mb", 64)) * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])  # touch every page, so it counts in RSS
        _HOARD.append(block)
    return {"slot": slot, "action": action, "pid": os.getpid()}
