"""The sandbox contract: what the coordinator asks of a worker's sandbox, and how the worker reports it.

The coordinator builds a `SandboxSpec` from its config (paths, limits, the cgroup it placed the worker in)
and hands it to the worker on its command line, because the layers must be in place before the worker
starts any thread, long before CONFIG could arrive. The worker applies the layers in `LAYER_ORDER`,
checks each one from the inside (a TCP socket must fail, the canary file must be unreadable) and reports
the names of the layers it *verified* in READY; `LayerReport` carries the reason a layer is missing.

Layer names are stable strings: they appear in READY, in `ob-ctl workers`, in `sandbox.require` and in
the logs.

These are plain dataclasses, not pydantic models like the messages: the coordinator's start-up probe is a
worker that only builds its sandbox and reports, and without pydantic it starts in a fifth of the time
(every coordinator start waits for it). `from_json` checks types and bounds as strictly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Always applied: a worker that cannot set one of these does not start.
BASE_LAYERS = ("session", "pdeathsig", "rlimits", "no_new_privs", "scratch", "env")
#: Applied where the kernel and our privileges allow; each is probed, verified and reported.
KERNEL_LAYERS = ("cgroup", "netns", "caps", "landlock", "seccomp")
#: Every layer, in the order the worker applies them (ARCHITECTURE section 5).
LAYER_ORDER = (
    "session",
    "env",
    "scratch",
    "cgroup",
    "netns",
    "rlimits",
    "pdeathsig",
    "no_new_privs",
    "caps",
    "landlock",
    "seccomp",
)
ALL_LAYERS = frozenset(LAYER_ORDER)

MAX_PATHS = 4096
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one worker process (and everything it starts)."""

    memory_bytes: int = 1024 * 1024 * 1024  # RLIMIT_AS, cgroup memory
    cpu_s: int = 300  # RLIMIT_CPU soft limit per job
    fsize_bytes: int = 256 * 1024 * 1024  # RLIMIT_FSIZE: the largest file written
    nofile: int = 256  # RLIMIT_NOFILE
    processes: int = 64  # cgroup pids.max; RLIMIT_NPROC when not root

    def __post_init__(self) -> None:
        for name, low, high in (
            ("memory_bytes", 64 * 1024 * 1024, 1 << 50),
            ("cpu_s", 1, 1 << 31),
            ("fsize_bytes", 1024 * 1024, 1 << 50),
            ("nofile", 32, 1 << 20),
            ("processes", 4, 1 << 16),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"limits.{name}: {value!r} is not an integer in [{low}, {high}]")


@dataclass(frozen=True)
class SandboxSpec:
    """Everything a worker needs to build its sandbox, decided by the coordinator."""

    read: list[str] = field(default_factory=list)  # buckets: read-only
    write: list[str] = field(default_factory=list)  # note outputs: read-write
    execute: list[str] = field(default_factory=list)  # command skills' programs and scripts
    scratch: str = ""  # private, empty, read-write; also HOME and TMPDIR
    canary: str = ""  # a file outside every allowed path: the worker proves it cannot read it
    cgroup: list[str] = field(default_factory=list)  # the cgroup dirs we were put in
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    disable: list[str] = field(default_factory=list)  # layers not to apply (config)

    def __post_init__(self) -> None:
        for name in ("read", "write", "execute", "cgroup", "disable"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple) or len(value) > MAX_PATHS:
                raise ValueError(f"{name}: expected a list of at most {MAX_PATHS} strings")
            for item in value:
                _check_str(f"{name}[]", item)
        _check_str("scratch", self.scratch)
        _check_str("canary", self.canary)
        if not isinstance(self.limits, SandboxLimits):
            raise ValueError("limits: expected SandboxLimits")

    def to_json(self) -> str:
        """The spec as one JSON line (the worker's `--sandbox` argument)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SandboxSpec:
        """Parse and check a spec; ValueError names the first bad field."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a sandbox spec is a JSON object")
        _known(data, cls, "spec")
        limits = data.pop("limits", {})
        if not isinstance(limits, dict):
            raise ValueError("limits: expected an object")
        _known(limits, SandboxLimits, "limits")
        return cls(**data, limits=SandboxLimits(**limits))


@dataclass(frozen=True)
class LayerReport:
    """One layer as the worker found it: active (verified from inside) or not, and why."""

    name: str
    active: bool
    detail: str = ""

    def __post_init__(self) -> None:
        _check_str("name", self.name, 64)
        _check_str("detail", self.detail, 1024)
        if not isinstance(self.active, bool):
            raise ValueError("active: expected a boolean")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LayerReport:
        if not isinstance(data, dict):
            raise ValueError("a layer report is a JSON object")
        _known(data, cls, "report")
        return cls(**data)


def _check_str(name: str, value: Any, limit: int = MAX_PATH_CHARS) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name}: expected a string of at most {limit} characters")


def _known(data: dict[str, Any], cls: type, what: str) -> None:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{what}: unknown key {sorted(unknown)[0]!r}")
