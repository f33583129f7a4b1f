"""Configuration: a pydantic model read from TOML, overridable from the command line.

The model's defaults *are* the embedded default config; `config/openbuckets.toml` spells the same values out
for people to copy (a test keeps the two equal). Every problem surfaces as one `ConfigError` line that names
the file, the field and what is wrong, so the CLI can print it and exit 2 before anything starts.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocol.sandbox import ALL_LAYERS, BASE_LAYERS, LAYER_ORDER
from protocol.skills import BUILTIN_SKILLS, parse_rate

DEFAULT_CONFIG_PATH = Path("config/openbuckets.toml")

#: Names that are never a finished file: dotfiles and the temp names of editors, browsers and downloaders.
DEFAULT_TEMP_IGNORES = [".*", "*.tmp", "*.part", "*.crdownload", "~*"]


#: "package.module:function": dotted identifiers, a colon, an identifier.
_HANDLER_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


class ConfigError(Exception):
    """A configuration that cannot be used; `str()` is the one line to show the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServiceConfig(_Section):
    """Process-wide settings."""

    workers: int = Field(default=4, ge=1, le=256)
    state_dir: Path = Path("./.openbuckets")
    output: Path = Path("./notes")
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=3600)
    status_interval_s: float = Field(default=0.0, ge=0, le=86400)  # a compact status line in the log (0: off)

    @field_validator("status_interval_s")
    @classmethod
    def _not_a_flood(cls, seconds: float) -> float:
        if 0 < seconds < 1:
            raise ValueError("a status line at most once a second (or 0 for none)")
        return seconds


class WatcherConfig(_Section):
    """How buckets are watched (see docs/watcher.md)."""

    settle_s: float = Field(default=1.0, ge=0, le=600)
    rescan_interval_s: float = Field(default=30.0, gt=0, le=86400)
    temp_ignore: list[str] = Field(default_factory=lambda: list(DEFAULT_TEMP_IGNORES))
    polling: bool = False


class SupervisorConfig(_Section):
    """Worker supervision: heartbeats, restarts, quarantine."""

    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60)
    liveness: int = Field(default=3, ge=1, le=100)
    start_timeout_s: float = Field(default=15.0, gt=0, le=600)
    backoff_initial_s: float = Field(default=0.5, ge=0, le=600)
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600)
    stable_uptime_s: float = Field(default=30.0, ge=0, le=86400)
    max_restarts: int = Field(default=5, ge=0, le=1000)
    restart_window_s: float = Field(default=60.0, gt=0, le=86400)
    kill_grace_s: float = Field(default=2.0, ge=0, le=60)
    quarantine_after: int = Field(default=2, ge=1, le=100)
    spare_workers: int = Field(default=1, ge=0, le=16)
    # Workers run this much nicer than the coordinator, so a worker spinning on a hostile file cannot starve
    # the loop that heartbeats, times and replaces it (and a big start-up scan is not slowed by workers).
    worker_nice: int = Field(default=5, ge=0, le=19)
    # Recycling (Celery's max_tasks_per_child / max_memory_per_child): a worker is replaced gracefully, one
    # slot at a time, after this many jobs (0: never) or once its RSS passes this many MiB (0: never).
    max_jobs_per_worker: int = Field(default=0, ge=0, le=10_000_000)
    max_rss_mb: int = Field(default=512, ge=0, le=1_048_576)
    # A failed slot is never failed for good: after this cool-down (doubling up to the max) it gets one
    # trial start; `ob-ctl restart-worker SLOT` starts it at once.
    failed_cooldown_s: float = Field(default=60.0, gt=0, le=86400)
    failed_cooldown_max_s: float = Field(default=600.0, gt=0, le=86400)


class JobsConfig(_Section):
    """Per-job limits."""

    deadline_s: float = Field(default=60.0, gt=0, le=86400)  # the base: every job gets at least this
    deadline_per_mb_s: float = Field(default=1.0, ge=0, le=3600)  # plus this per MiB of input
    deadline_grace_s: float = Field(default=5.0, ge=0, le=3600)
    max_input_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # What one job (its worker and everything it starts) may use; enforced by the sandbox (docs/security.md).
    max_output_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)  # largest file written
    max_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=128 * 1024 * 1024)
    max_cpu_s: int = Field(default=120, ge=1, le=86400)
    max_processes: int = Field(default=64, ge=8, le=65536)
    preview_lines: int = Field(default=0, ge=0, le=100_000)  # at most this many lines of text (0: no limit)
    retry_backoff_initial_s: float = Field(default=0.5, ge=0, le=3600)
    retry_backoff_factor: float = Field(default=2.0, ge=1, le=100)
    retry_backoff_max_s: float = Field(default=30.0, ge=0, le=86400)
    retry_max_attempts: int = Field(default=5, ge=1, le=1000)  # attempts in all, the first one included
    after_success: Literal["keep", "move", "delete"] = "keep"
    # "noop": workers only acknowledge (no read, no note) while queue and records work as usual; for
    # measuring the dispatch path itself (scripts/bench.py).
    pipeline: Literal["default", "noop"] = "default"
    processed_dir: Path | None = None  # default <state_dir>/processed
    quarantine_move: bool = False
    quarantine_dir: Path | None = None  # default <state_dir>/quarantine
    skill_paths: list[Path] = Field(default_factory=list)  # where workers import handler skills from


class BalancerConfig(_Section):
    """Which idle worker gets the next job (see docs/supervision.md)."""

    strategy: Literal["least_loaded", "round_robin", "weighted"] = "least_loaded"
    weights: list[int] = Field(default_factory=list)  # weighted: slot i gets weights[i] (missing: 1)

    @field_validator("weights")
    @classmethod
    def _positive(cls, weights: list[int]) -> list[int]:
        for i, weight in enumerate(weights):
            if weight < 1:  # a zero weight would starve the slot forever
                raise ValueError(f"weights[{i}] is {weight}; a weight is a whole number of at least 1")
        return weights


class BreakerConfig(_Section):
    """The circuit breaker of every worker slot: infrastructure failures only, never a bad file."""

    failure_threshold: int = Field(default=5, ge=0, le=1000)  # consecutive failures that open it (0: off)
    failure_rate: float = Field(default=0.5, gt=0, le=1)  # or failures above this share ...
    window: int = Field(default=20, ge=1, le=10_000)  # ... of the slot's last `window` jobs ...
    min_samples: int = Field(default=10, ge=1, le=10_000)  # ... once it has seen this many
    recovery_s: float = Field(default=30.0, ge=0, le=86400)  # open this long, then one probe job


class FleetConfig(_Section):
    """Restart-storm guard: when too much of the fleet is failing, pause dispatch until one probe works."""

    open_fraction: float = Field(default=0.5, ge=0, le=1)  # share of slots with open breakers (0: off)
    max_restarts: int = Field(default=20, ge=0, le=100_000)  # more restarts than this ... (0: off)
    restart_window_s: float = Field(default=60.0, gt=0, le=86400)  # ... within this many seconds
    probe_interval_s: float = Field(default=10.0, ge=0, le=86400)  # while paused: one probe job this often


class MetricsSection(_Section):
    """Snapshots of the metrics and the markdown reports (see docs/design.md, "Metrics and reports")."""

    snapshot_interval_s: float = Field(default=60.0, ge=1, le=86400)  # METRICS-*.json, reports, a log entry
    retention: int = Field(default=1440, ge=1, le=1_000_000)  # snapshots kept (a day at one a minute)
    reports: bool = True  # RUN_SUMMARY.md, METRICS_SNAPSHOT.md, CONTEXT_TREE.md, CONFIG_DUMP.md


class AlertsConfig(_Section):
    """Alert thresholds (0 switches one off): a breach is logged, shown in status and the snapshot, and
    makes health `degraded` until it clears."""

    error_rate: float = Field(default=0.5, ge=0, le=1)  # failed share of the last 5 minutes' files
    queue_depth: int = Field(default=10_000, ge=0)  # queued jobs
    queue_wait_p95_s: float = Field(default=600.0, ge=0)  # P95 wait from admission to a worker
    failed_slots: int = Field(default=1, ge=0)  # worker slots in `failed`
    restarts_per_min: int = Field(default=10, ge=0)  # worker restarts in the last minute
    disk_free_mb: int = Field(default=512, ge=0)  # free space where notes and records are written


class NotesConfig(_Section):
    """What a note carries beside the facts (the file's text, its bucket's related files and grep results
    from `.bucket-include` rules), and the `.error` sidecar written on a terminal failure."""

    content_max_bytes: int = Field(default=256 * 1024, ge=0, le=16 * 1024 * 1024)  # the file's text (0: none)
    bucket_include: bool = True  # read `.bucket-include` files (bucket, per extension, global)
    global_profile: Path | None = None  # default: $XDG_CONFIG_HOME/open-buckets (~/.config/open-buckets)
    related_listed: int = Field(default=20, ge=0, le=1000)  # related files listed (the rest are counted)
    grep_context_lines: int = Field(default=2, ge=0, le=10)  # lines shown around each grep match
    grep_max_matches: int = Field(default=100, ge=0, le=2000)  # grep matches listed per note
    grep_max_bytes: int = Field(default=64 * 1024, ge=0, le=4 * 1024 * 1024)  # grep text per note
    context_cache_s: float = Field(default=10.0, ge=0, le=3600)  # a burst reuses one scan for this long
    error_sidecars: bool = True  # `<name>.error` beside where the note would have been
    sidecar_dir: Path | None = None  # default: the note's directory; inside a bucket only if set there
    sidecar_content_bytes: int = Field(default=16 * 1024, ge=0, le=1024 * 1024)  # text of the failed file


class SandboxConfig(_Section):
    """Which sandbox layers workers must have (see docs/security.md)."""

    # "auto": the base layers, plus every kernel layer the start-up probe verified on this machine; a layer
    # the kernel lacks is a warning. A list: exactly these, and the service refuses to start without them.
    require: Literal["auto"] | list[str] = "auto"
    disable: list[str] = Field(default_factory=list)  # layers not to apply at all (reported as disabled)
    read_paths: list[Path] = Field(default_factory=list)  # extra read-only paths for skills (data, tools)

    @field_validator("require", "disable")
    @classmethod
    def _known_layers(cls, names: Any) -> Any:
        if isinstance(names, list):
            for name in names:
                if name not in ALL_LAYERS:
                    known = ", ".join(LAYER_ORDER)
                    raise ValueError(f"unknown sandbox layer {name!r} (known: {known})")
        return names

    @model_validator(mode="after")
    def _not_both(self) -> SandboxConfig:
        for name in self.disable:
            if name in BASE_LAYERS:
                raise ValueError(f"disable: {name!r} is a base layer and cannot be disabled")
            if isinstance(self.require, list) and name in self.require:
                raise ValueError(f"require: {name!r} is both required and disabled")
        return self


class BucketConfig(_Section):
    """One watched drop directory."""

    path: Path
    name: str = ""
    patterns: list[str] = Field(default_factory=lambda: ["*"])
    ignore: list[str] = Field(default_factory=list)
    output: Path | None = None
    create: bool = False

    def check_path(self) -> str | None:
        """Why this bucket's path cannot be used, or None. A missing bucket is created at start, but its
        parent must exist unless `create = true`: a typo in a path should fail loudly, not create a tree
        somewhere unexpected."""
        resolved = self.path.expanduser().absolute()
        if resolved.exists() and not resolved.is_dir():
            return f"{resolved} exists and is not a directory"
        if not resolved.exists() and not self.create and not resolved.parent.is_dir():
            return f"parent directory {resolved.parent} does not exist (set create = true to make it)"
        return None

    @model_validator(mode="after")
    def _default_name(self) -> BucketConfig:
        if not self.name:
            self.name = self.path.expanduser().absolute().name or "bucket"
        # A name becomes a directory (`<output>/<name>/` when buckets share an output, `sidecar_dir/<name>/`)
        # and a note's name (`CONTEXT_TREE-<name>`): one path component, printable, of a bounded length.
        problem = _bad_bucket_name(self.name)
        if problem is not None:
            raise ValueError(f"bucket name {self.name!r}: {problem}")
        return self


def _bad_bucket_name(name: str) -> str | None:
    if name in (".", ".."):
        return "cannot be '.' or '..'"
    if "/" in name or "\x00" in name:
        return "cannot contain '/' or NUL (it names a directory)"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "cannot contain control characters"
    if len(name) > 200:
        return "at most 200 characters"
    return None


class SkillRuleConfig(_Section):
    """`[[skills]]`: files matching `pattern` are described by a built-in `skill`, by a Python `handler`
    ("package.module:function", imported in the workers, never here), or by an external `command`
    (`["pdftotext", "{input}", "-"]`, run by the workers with `timeout_s`, `max_output_bytes` and an
    optional `rate_limit` such as "60/min"). The first matching rule wins; files no rule matches get the
    built-in choice for their detected type."""

    pattern: str = Field(min_length=1, max_length=256)  # a glob: no "/" matches the name, with "/" the path
    skill: str | None = None
    handler: str | None = Field(default=None, max_length=256)
    command: list[str] | None = Field(default=None, min_length=1, max_length=64)
    timeout_s: float = Field(default=30.0, gt=0, le=86400)
    max_output_bytes: int = Field(default=1024 * 1024, ge=0, le=256 * 1024 * 1024)
    rate_limit: str | None = None

    @field_validator("skill")
    @classmethod
    def _known_skill(cls, name: str | None) -> str | None:
        if name is not None and name not in BUILTIN_SKILLS:
            raise ValueError(f"unknown skill {name!r}; the built-in skills are {', '.join(BUILTIN_SKILLS)}")
        return name

    @field_validator("handler")
    @classmethod
    def _handler_spec(cls, spec: str | None) -> str | None:
        if spec is not None and not _HANDLER_SPEC.fullmatch(spec):
            raise ValueError(f"handler {spec!r} is not of the form package.module:function")
        return spec

    @field_validator("command")
    @classmethod
    def _command_template(cls, argv: list[str] | None) -> list[str] | None:
        if argv is not None:
            for arg in argv:
                for _, name, spec, conversion in string.Formatter().parse(arg):
                    if name is not None and (name != "input" or spec or conversion):
                        raise ValueError(f"command argument {arg!r}: the only placeholder is {{input}}")
        return argv

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, text: str | None) -> str | None:
        if text is not None:
            parse_rate(text)  # its ValueError says what is wrong
        return text

    @model_validator(mode="after")
    def _one_kind(self) -> SkillRuleConfig:
        if sum(x is not None for x in (self.skill, self.handler, self.command)) != 1:
            raise ValueError("give exactly one of skill, handler or command")
        return self


class GrepRuleConfig(_Section):
    """`[[grep]]`: lines of text files matching `regex` (Python syntax) are listed, with their line numbers,
    in the note and the record; `tags` go on the note when it matches; `buckets` limits the rule to some
    buckets (by name; empty: all)."""

    name: str = Field(min_length=1, max_length=64)
    regex: str = Field(min_length=1, max_length=4096)
    tags: list[str] = Field(default_factory=list)
    buckets: list[str] = Field(default_factory=list)
    scope: Literal["file", "directory"] = "file"  # directory: search the file's whole bucket (rg, grep, re)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex, re.MULTILINE)  # as the workers compile it
        except re.error as exc:  # here, at start: never at run time in a worker
            raise ValueError(f"invalid regular expression {regex!r}: {exc}") from None
        return regex


def _default_buckets() -> list[BucketConfig]:
    return [BucketConfig(path=Path("./buckets/incoming"), name="incoming", create=True)]


class Config(_Section):
    """The whole configuration."""

    service: ServiceConfig = Field(default_factory=ServiceConfig)
    watcher: WatcherConfig = Field(default_factory=WatcherConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    balancer: BalancerConfig = Field(default_factory=BalancerConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    notes: NotesConfig = Field(default_factory=NotesConfig)
    buckets: list[BucketConfig] = Field(default_factory=_default_buckets, min_length=1)
    skills: list[SkillRuleConfig] = Field(default_factory=list)
    grep: list[GrepRuleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _usable_buckets(self) -> Config:
        names = [b.name for b in self.buckets]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"buckets[{i}].name: bucket name {name!r} is used twice")
        rules = [g.name for g in self.grep]
        for i, rule in enumerate(self.grep):
            if rule.name in rules[:i]:
                raise ValueError(f"grep[{i}].name: grep rule name {rule.name!r} is used twice")
            unknown = [b for b in rule.buckets if b not in names]
            if unknown:
                raise ValueError(f"grep[{i}].buckets: no bucket named {unknown[0]!r}")
        for i, bucket in enumerate(self.buckets):
            problem = bucket.check_path()
            if problem:
                raise ValueError(f"buckets[{i}].path: {problem}")
        return self

    def processed_dir(self) -> Path:
        """Where `after_success = "move"` puts inputs."""
        return (self.jobs.processed_dir or self.service.state_dir / "processed").expanduser().absolute()

    def quarantine_dir(self) -> Path:
        """Where `quarantine_move = true` puts quarantined inputs."""
        return (self.jobs.quarantine_dir or self.service.state_dir / "quarantine").expanduser().absolute()

    def bucket_output(self, bucket: BucketConfig) -> Path:
        """Where a bucket's notes go: its own `output`, else the service output (plus the bucket's name when
        several buckets share it, so two buckets' `a.txt` can never overwrite each other's note)."""
        if bucket.output is not None:
            return bucket.output.expanduser().absolute()
        base = self.service.output.expanduser().absolute()
        shared = sum(1 for b in self.buckets if b.output is None)
        return base / bucket.name if shared > 1 else base


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    parts: list[str] = []
    for item in err["loc"]:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    field = ".".join(parts) or "config"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if field == "config" and msg.startswith("buckets["):
        return f"{source}: {msg}"
    value = err.get("input")
    shown = (
        ""
        if err["type"] in ("missing", "extra_forbidden") or isinstance(value, dict)
        else f" (got {value!r})"
    )
    return f"{source}: {field}: {msg}{shown}"


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


#: Environment variables that set one field each: OPENBUCKETS_<SECTION>__<KEY>, e.g.
#: OPENBUCKETS_SERVICE__WORKERS=8 or OPENBUCKETS_WATCHER__TEMP_IGNORE='["*.tmp"]' (a TOML value; anything
#: that does not parse as one is taken as a string). Over the file, under the command line.
ENV_PREFIX = "OPENBUCKETS_"


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, Any]]:
    """{dotted field: (variable name, value)} from the OPENBUCKETS_* variables of `environ` (os.environ)
    that name a setting (`ignored_env` lists the others: another tool's variable must not stop us). A text
    or path setting takes the variable as it is; any other parses it as a TOML value (`8`, `true`,
    `["*.tmp"]`), falling back to the text for the model to judge."""
    out: dict[str, tuple[str, Any]] = {}
    for name, dotted, field in _env_fields(environ):
        raw = (os.environ if environ is None else environ)[name]
        if field is None:
            continue
        value: Any = raw
        if not _is_text(field.annotation):
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                pass
        out[dotted] = (name, value)
    return out


def ignored_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """OPENBUCKETS_* variables that name no setting (a typo, or another tool's): said once, then ignored."""
    return [name for name, _, field in _env_fields(environ) if field is None]


def _env_fields(environ: Mapping[str, str] | None) -> list[tuple[str, str, Any]]:
    """(variable, dotted name, the pydantic field it names or None) for each OPENBUCKETS_* variable."""
    out = []
    for name in sorted(os.environ if environ is None else environ):
        if name.startswith(ENV_PREFIX):
            dotted = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
            out.append((name, dotted, _field(dotted)))
    return out


def _field(dotted: str) -> Any:
    """The field `section.key` of Config names (sections are models; lists such as buckets are not
    reachable one field at a time), or None."""
    parts = dotted.split(".")
    if len(parts) != 2:
        return None
    section = Config.model_fields.get(parts[0])
    model = section.annotation if section is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return model.model_fields.get(parts[1])


def _is_text(annotation: Any) -> bool:
    """str, Path, or either or None: a value that must not be read as a TOML date or number."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    return all(a in (str, Path) for a in args)


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read `path` (or the default file if it exists, else the embedded defaults), then the OPENBUCKETS_*
    environment variables (`env_overrides`), then apply overrides (the command line's).

    `overrides` maps dotted field names (`service.workers`) to values; `buckets` replaces the whole list.
    Raises `ConfigError` with one line naming the file, the field and the problem.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{source}: is a directory, not a TOML file") from None
        except PermissionError:
            raise ConfigError(f"{source}: permission denied") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text: {exc.reason}") from None
    from_env = env_overrides(environ)
    for dotted, (_, value) in from_env.items():
        _set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    if from_env:
        source += f" (with {', '.join(name for name, _ in from_env.values())})"
    return config_from(data, source)


def config_from(data: dict[str, Any], source: str) -> Config:
    """Validate plain data (a parsed file, or a running config's `model_dump()` with changes) as a Config.
    Raises `ConfigError` with one line naming `source`, the field and the problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None
