"""Message bodies, one pydantic model per message type.

Worker → coordinator: READY, RESULT, ERROR, HEARTBEAT, PONG, STATUS.
Coordinator → worker: CONFIG, EXECUTE, CANCEL, PING, SHUTDOWN, HEARTBEAT.

Every model forbids unknown keys and bounds its strings, so a hostile peer cannot smuggle fields or
memory through the boundary. The envelope that carries a body is in `protocol.envelope`.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

ShortStr = Annotated[str, Field(max_length=256)]
PathStr = Annotated[str, Field(max_length=4096)]


def _fs_path(value: Any) -> str:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, str):
        raise ValueError("a path must be a string")
    if len(value) > 4096:
        raise ValueError("a path must be at most 4096 characters")
    return value


def text_or_fs_bytes(value: str) -> str | bytes:
    """`value` itself when it is valid UTF-8, else its file-system bytes (a non-UTF-8 file name)."""
    if value.isascii():
        return value
    try:
        value.encode()
        return value
    except UnicodeEncodeError:
        return os.fsencode(value)


#: A file-system path. Linux names are bytes and need not be UTF-8; Python shows such a name as a str with
#: lone surrogates, which msgpack's str (and pydantic's) refuses. On the wire it is a str when it is valid
#: UTF-8 and its raw bytes otherwise; either way it arrives as the same str it left as.
FsPath = Annotated[str, PlainValidator(_fs_path), PlainSerializer(text_or_fs_bytes)]
Detail = Annotated[str, Field(max_length=16384)]


class Body(BaseModel):
    """Base of every message body: strict about unknown keys, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- worker → coordinator -------------------------------------------------------------------------------


class Ready(Body):
    """A worker announces itself after connecting; answered with CONFIG."""

    slot: int = Field(ge=0, le=10_000)
    generation: int = Field(ge=0)
    pid: int = Field(gt=0)
    version: ShortStr
    capabilities: list[ShortStr] = Field(default_factory=list, max_length=64)
    sandbox: list[ShortStr] = Field(default_factory=list, max_length=64)


#: A skill's finding: short strings, numbers, booleans.
DetailValue = Annotated[str, Field(max_length=1024)] | int | float | bool | None


class SkillRule(BaseModel):
    """Files whose name (a glob without "/") or relative path (with "/") matches `pattern` are described
    by the built-in `skill`, by the Python `handler` ("package.module:function") loaded in the worker, or
    by an external `command`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: ShortStr
    skill: ShortStr | None = None
    handler: ShortStr | None = None
    # An external command ("{input}" is the file's path), run in the worker with its own limits.
    command: list[PathStr] | None = Field(default=None, max_length=64)
    timeout_s: float = Field(default=30.0, gt=0, le=86400)
    max_output_bytes: int = Field(default=1024 * 1024, ge=0, le=256 * 1024 * 1024)
    rate_limit: ShortStr | None = None  # "60/min": jobs beyond it wait their turn


class GrepRule(BaseModel):
    """A regular expression whose matches (with line numbers) go into the note and the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ShortStr
    regex: Annotated[str, Field(max_length=4096)]
    tags: list[ShortStr] = Field(default_factory=list, max_length=32)
    buckets: list[ShortStr] = Field(default_factory=list, max_length=256)  # empty: every bucket
    scope: Literal["file", "directory"] = "file"  # directory: the file's whole bucket (rg, grep, re)


class GrepMatch(BaseModel):
    """One line a grep rule matched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: ShortStr
    line: int = Field(ge=1)
    text: Annotated[str, Field(max_length=512)]
    path: FsPath | None = None  # for a directory rule: the matching file, relative to the bucket


class Recovery(BaseModel):
    """How a job got its answer when the first way did not work (a tool missing, a breaker open)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempted: bool = True
    fallback: ShortStr | None = None
    successful: bool = True
    reason: Annotated[str, Field(max_length=2048)] = ""


class ContextFacts(BaseModel):
    """What a note's `.bucket-include` context held: related files, directory-grep results, and whether a
    scan ran for this file or an earlier one's was reused (a burst runs a handful, not one per file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    related_files: int = Field(default=0, ge=0)  # files of the bucket matching the includes minus excludes
    related_bytes: int = Field(default=0, ge=0)
    grep_dirs: int = Field(default=0, ge=0)  # [dirs:...] sections searched
    grep_matches: int = Field(default=0, ge=0)  # matches found (the note lists a bounded part)
    grep_tool: ShortStr | None = None  # rg | grep | python
    scanned: bool = False  # this file's context was computed now, not taken from the burst's cache
    problems: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=32)


class FileFacts(BaseModel):
    """What the worker learned about a file; goes into the note and the SUCCESS record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    file_type: ShortStr
    mime: ShortStr
    is_text: bool
    encoding: ShortStr | None = None
    line_count: int | None = Field(default=None, ge=0)
    word_count: int | None = Field(default=None, ge=0)
    skill: ShortStr | None = None  # the skill that described the file
    # What the skill learned (the note's table): names to scalars, bounded like everything on the wire.
    details: dict[ShortStr, DetailValue] = Field(default_factory=dict, max_length=64)
    grep_matches: list[GrepMatch] = Field(default_factory=list, max_length=2000)
    recovery: Recovery | None = None
    context: ContextFacts | None = None  # None: no `.bucket-include` applied to the file


class Result(Body):
    """A job finished and its note is on disk."""

    job_id: ShortStr
    output_path: FsPath | None = None  # None: no note (the no-op pipeline)
    duration_s: float = Field(ge=0)
    facts: FileFacts | None = None
    retiring: bool = False  # the worker exits after this answer: give it no new job


ErrorCategory = Literal[
    "Configuration",
    "FileAccess",
    "PatternMatching",
    "ExternalTool",
    "FileContent",
    "System",
    "WorkerCrash",
    "Timeout",
    "ResourceLimit",
    "SandboxViolation",
    "Quarantined",
    "Protocol",
    "Cancelled",  # written by the coordinator only: an operator removed the bucket with --cancel
]


class Error(Body):
    """A job failed inside the worker (the worker itself is fine), or a protocol-level complaint."""

    job_id: ShortStr | None = None
    category: ErrorCategory
    retryable: bool = False
    name: ShortStr = "Error"
    message: Detail
    code: ShortStr | None = None
    stack: Detail | None = None
    duration_s: float = Field(default=0.0, ge=0)
    retiring: bool = False  # the worker exits after this answer: give it no new job


WorkerState = Literal["idle", "busy", "stopping"]


class Heartbeat(Body):
    """Sent both ways every interval. From a worker it also carries its state and resource use."""

    state: WorkerState | None = None
    job_id: ShortStr | None = None
    rss_bytes: int | None = Field(default=None, ge=0)
    cpu_time_s: float | None = Field(default=None, ge=0)


class Pong(Body):
    """Answer to PING, echoing its nonce."""

    nonce: int = 0


class Status(Body):
    """Free-form status a worker may volunteer (counters, sandbox notes)."""

    detail: dict[ShortStr, Any] = Field(default_factory=dict, max_length=64)


# -- coordinator → worker -------------------------------------------------------------------------------


class Limits(BaseModel):
    """Per-job limits the worker enforces on itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_input_bytes: int = Field(ge=0)
    preview_lines: int = Field(ge=0, le=100_000)  # 0: no limit


class NoteSettings(BaseModel):
    """What a note carries beside the facts (`[notes]` in the coordinator's config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content_max_bytes: int = Field(default=256 * 1024, ge=0, le=16 * 1024 * 1024)
    related_listed: int = Field(default=20, ge=0, le=1000)
    grep_context_lines: int = Field(default=2, ge=0, le=10)
    grep_max_matches: int = Field(default=100, ge=0, le=2000)
    grep_max_bytes: int = Field(default=64 * 1024, ge=0, le=4 * 1024 * 1024)
    context_cache_s: float = Field(default=10.0, ge=0, le=3600)


class DirsRule(BaseModel):
    """A `[dirs:PATH]` section: regexes (Python syntax) to search for under PATH, relative to the bucket
    (already checked by the coordinator not to be absolute or climb out with "..")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: PathStr
    patterns: list[Annotated[str, Field(max_length=4096)]] = Field(max_length=256)


class ContextRules(BaseModel):
    """The `.bucket-include` rules that apply to one file, merged most specific first. `key` names this
    exact set of rules: workers reuse a scan for the same (bucket, key) during a burst."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: ShortStr
    includes: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=512)
    excludes: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list, max_length=512)
    dirs: list[DirsRule] = Field(default_factory=list, max_length=64)


class Config(Body):
    """The coordinator's answer to READY: how this worker should behave."""

    heartbeat_interval_s: float = Field(gt=0, le=60)
    liveness: int = Field(ge=1, le=100)
    limits: Limits
    skills: list[SkillRule] = Field(default_factory=list, max_length=256)  # first match wins
    skill_paths: list[PathStr] = Field(default_factory=list, max_length=64)  # handlers import from here
    grep: list[GrepRule] = Field(default_factory=list, max_length=256)
    pipeline: Literal["default", "noop"] = "default"
    notes: NoteSettings = NoteSettings()


class Execute(Body):
    """Process one file and write its note to `output_path`."""

    job_id: ShortStr
    path: FsPath
    bucket: ShortStr
    relpath: FsPath
    output_path: FsPath
    deadline_s: float = Field(gt=0)
    attempt: int = Field(ge=1)
    skills: list[ShortStr] = Field(default_factory=list, max_length=64)
    # The version the job is about; a file that no longer matches is refused (it is a new job).
    size: int | None = Field(default=None, ge=0)
    mtime_ns: int | None = None
    inode: int | None = Field(default=None, ge=0)
    context: ContextRules | None = None  # None: no `.bucket-include` applies to this file


class Cancel(Body):
    """Give up on a job (the worker answers ERROR for it)."""

    job_id: ShortStr


class Ping(Body):
    """Ask for a PONG."""

    nonce: int = 0


class Shutdown(Body):
    """Finish nothing new; exit cleanly."""

    reason: ShortStr = "shutdown"


#: type name on the wire → body model
MESSAGE_TYPES: dict[str, type[Body]] = {
    "READY": Ready,
    "RESULT": Result,
    "ERROR": Error,
    "HEARTBEAT": Heartbeat,
    "PONG": Pong,
    "STATUS": Status,
    "CONFIG": Config,
    "EXECUTE": Execute,
    "CANCEL": Cancel,
    "PING": Ping,
    "SHUTDOWN": Shutdown,
}

TYPE_NAMES: dict[type[Body], str] = {model: name for name, model in MESSAGE_TYPES.items()}
