"""The sandbox contract: what the coordinator asks of a worker's sandbox, and how the worker reports it.

The coordinator builds a `SandboxSpec` from its config (paths, limits, the cgroup it placed the worker in)
and hands it to the worker on its command line, because the layers must be in place before the worker
starts any thread, long before CONFIG could arrive. The worker applies the layers in `LAYER_ORDER`,
checks each one from the inside (a TCP socket must fail, the canary file must be unreadable) and reports
the names of the layers it *verified* in READY; `LayerReport` carries the reason a layer is missing.

Layer names are stable strings: they appear in READY, in `ob-ctl workers`, in `sandbox.require` and in
the logs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PathStr = Annotated[str, Field(max_length=4096)]

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


class SandboxLimits(BaseModel):
    """Resource limits for one worker process (and everything it starts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)  # RLIMIT_AS, cgroup memory
    cpu_s: int = Field(default=300, ge=1)  # RLIMIT_CPU soft limit per job (hard = soft + 5 s)
    fsize_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)  # RLIMIT_FSIZE: largest file written
    nofile: int = Field(default=256, ge=32, le=1 << 20)  # RLIMIT_NOFILE
    processes: int = Field(default=64, ge=4, le=1 << 16)  # cgroup pids.max; RLIMIT_NPROC when not root


class SandboxSpec(BaseModel):
    """Everything a worker needs to build its sandbox, decided by the coordinator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    read: list[PathStr] = Field(default_factory=list, max_length=4096)  # buckets: read-only
    write: list[PathStr] = Field(default_factory=list, max_length=4096)  # note outputs: read-write
    execute: list[PathStr] = Field(default_factory=list, max_length=4096)  # command skills' programs
    scratch: PathStr = ""  # private, empty, read-write; also HOME and TMPDIR
    canary: PathStr = ""  # a file outside every allowed path: the worker proves it cannot read it
    cgroup: list[PathStr] = Field(default_factory=list, max_length=16)  # the cgroup dirs we were put in
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    disable: list[str] = Field(default_factory=list, max_length=64)  # layers not to apply (config)


class LayerReport(BaseModel):
    """One layer as the worker found it: active (verified from inside) or not, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=64)
    active: bool
    detail: str = Field(default="", max_length=1024)
