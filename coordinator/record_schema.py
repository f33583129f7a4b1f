"""The schema of SUCCESS and ERROR record files, and the check `RecordWriter` runs before writing one.

Plain Python rather than a schema library: the check runs once per job in the coordinator's loop, so it is
a flat tuple of (parent, key, allowed types) walked with exact `type() in` tests: 1.4 µs for a SUCCESS
record and 1.8 µs for an ERROR record (timeit, on records the writer produced), where writing the record
costs 20-60 times that (~37 µs on tmpfs, ~110 µs on /tmp). A schema library would cost several times as
much and add a dependency for fifty lines. Exact types on purpose: `True` is an `int` to `isinstance`, and
a bool job id is a bug.

A record that fails is a bug in the code that built it, never a reason to lose it: the writer logs it,
counts it and writes it anyway with `"validation": {"ok": false, "problems": [...]}`.
"""

from __future__ import annotations

from typing import Any

from coordinator.errors_table import SEVERITIES

_NUMBER = (int, float)
_TEXT = (str,)
_OPT_TEXT = (str, type(None))
_OPT_INT = (int, type(None))
_DICT = (dict,)

#: A field: (its parent's key, or None at the top level; its key; the types it may hold). Two levels are all
#: a record has, and a flat (parent, key) pair costs less to walk than a path of any length.
Field = tuple[str | None, str, tuple[type, ...]]

#: The fields both kinds of record carry (a parent is listed before its children).
_COMMON: tuple[Field, ...] = (
    (None, "jobId", (int,)),
    (None, "state", _TEXT),
    (None, "timestamp", _TEXT),
    (None, "filePath", _TEXT),
    (None, "watchDir", _TEXT),
    (None, "relativePath", _TEXT),
    (None, "context", _DICT),
    ("context", "version", _DICT),
    (None, "recovery", _DICT),
    ("recovery", "attempted", (bool,)),
    ("recovery", "successful", (bool,)),
)

SUCCESS_FIELDS: tuple[Field, ...] = (
    *_COMMON,
    (None, "recordId", _TEXT),
    (None, "outputPath", _OPT_TEXT),  # None: the no-op pipeline writes no note
    ("context", "skill", _OPT_TEXT),
    (None, "processing", _DICT),
    ("processing", "duration", _NUMBER),
    ("processing", "bytesProcessed", _OPT_INT),
    ("processing", "attempts", (int,)),
    (None, "metadata", _DICT),
)

ERROR_FIELDS: tuple[Field, ...] = (
    *_COMMON,
    (None, "errorId", _TEXT),
    (None, "severity", _TEXT),
    (None, "category", _TEXT),
    (None, "component", _TEXT),
    (None, "operation", _TEXT),
    (None, "error", _DICT),
    ("error", "name", _TEXT),
    ("error", "message", _TEXT),
    ("context", "worker", _OPT_TEXT),
    ("context", "attempts", (int,)),
    ("context", "kills", (int,)),
    ("context", "lastError", _OPT_TEXT),
    (None, "attempts", (int,)),
)

#: The job states each kind of record may name.
STATES = {"SUCCESS": frozenset({"done"}), "ERROR": frozenset({"failed", "quarantined"})}
_SEVERITIES = frozenset(SEVERITIES)
_MISSING = object()


def problems(kind: str, record: dict[str, Any]) -> list[str]:
    """What is wrong with a record of `kind` (SUCCESS or ERROR): an empty list when nothing is."""
    found: list[str] = []
    for parent, key, allowed in SUCCESS_FIELDS if kind == "SUCCESS" else ERROR_FIELDS:
        if parent is None:
            value = record.get(key, _MISSING)
        else:
            holder = record.get(parent)
            if type(holder) is not dict:
                continue  # reported at the parent's own entry
            value = holder.get(key, _MISSING)
        if type(value) not in allowed:
            found.append(_problem(key if parent is None else f"{parent}.{key}", value, allowed))
    # Values, for the fields that have the right type (a wrong or missing one is reported above).
    state = record.get("state")
    if type(state) is str and state not in STATES.get(kind, ()):
        found.append(f"state: {state!r} is not a state {kind} records name")
    severity = record.get("severity")
    if kind == "ERROR" and type(severity) is str and severity not in _SEVERITIES:
        found.append(f"severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
    return found


def _problem(where: str, value: Any, allowed: tuple[type, ...]) -> str:
    if value is _MISSING:
        return f"{where}: missing"
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    return f"{where}: {type(value).__name__} {value!r:.60}, expected {names}"
