"""What both sides agree on about skills: the built-in skill names (the coordinator validates a config
against them, the worker implements them in `worker/skills/`) and what a command skill's `rate_limit`
string means (the coordinator checks it at start, the worker's limiter enforces it)."""

from __future__ import annotations

import re

#: Every built-in skill, in the order `ob-coordinator` lists them.
BUILTIN_SKILLS: tuple[str, ...] = ("text", "markdown", "json", "csv", "code", "archive", "image", "binary")

_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}

# "60/min", "10/s", "5/2s", "1000/day", "3/1.5h": calls, slash, optional multiple, unit.
_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)")


def parse_rate(text: str) -> tuple[int, float]:
    """Parse a rate such as "60/min", "10/s", "100/hour", "5/2s" or "1000/day" into (max_calls, window_s)."""
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"rate_limit {text!r} is not N/s, N/min, N/hour or N/day")
    calls = int(match.group(1))
    multiple = float(match.group(2)) if match.group(2) else 1.0
    if calls < 1 or multiple <= 0:
        raise ValueError(f"rate_limit {text!r} must allow at least one call in a non-empty window")
    return calls, multiple * _UNITS[match.group(3)]
