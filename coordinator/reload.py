"""What a reloaded config changes in a running service: the pure part of SIGHUP and `ob-ctl reload`.

`plan_reload(running, reread)` compares the config the service runs with the file read again (with the
command line's overrides applied again, as at start) and returns a `ReloadPlan`: the config to run with now,
which buckets to stop and start watching, a summary of what changed, and a warning line for each change that
has to wait for a restart. Nothing here touches a process, a socket or the queue; `coordinator.live`
applies the plan.

What cannot change at run time, and why (the file's value is ignored, and the running one kept):

- `service.state_dir`: the queue, the records, the sockets and the lock live there;
- `service.output`, and any change that would move a running bucket's notes dir (its own `output`, or
  another bucket joining or leaving `service.output`, which puts shared notes under `<output>/<name>`):
  notes already written would stay behind, and queued jobs name their note's path;
- `service.log_level`, `service.log_json`: logging is set up once, for the coordinator and every worker;
- `sandbox.*`: the probe at start decided which layers every worker must have;
- `watcher.polling`, `watcher.temp_ignore`, `jobs.processed_dir`, `jobs.quarantine_dir`: the watcher is
  built with them (the observer kind, and the directories it must never pick files up from).

A new bucket whose notes would land in (or around) a running bucket's kept notes dir is not added either
(with a warning); one that breaks the rules of `coordinator.placement` makes the whole reload invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.config import BucketConfig, Config, ConfigError, config_from
from coordinator.placement import overlap, placement_problem

#: Fields only a restart can change (see the module docstring).
RESTART_ONLY = (
    "service.state_dir",
    "service.output",
    "service.log_level",
    "service.log_json",
    "sandbox.require",
    "sandbox.disable",
    "sandbox.read_paths",
    "watcher.polling",
    "watcher.temp_ignore",
    "jobs.processed_dir",
    "jobs.quarantine_dir",
)
#: Sections whose changes are listed field by field in the summary (buckets are compared by name).
_SECTIONS = ("service", "watcher", "supervisor", "jobs", "balancer", "breaker", "fleet", "metrics", "alerts")


@dataclass
class ReloadPlan:
    """What a reload does: run with `config`; stop watching `removed`, start watching `added` (a bucket whose
    path, patterns or ignore globs changed is in both); `changes` for the log, `kept` warnings for the
    changes that need a restart."""

    config: Config
    changes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added: list[BucketConfig] = field(default_factory=list)


def plan_reload(old: Config, new: Config, source: str = "<config>") -> ReloadPlan:
    """Compare the running config with the re-read one. Raises `ConfigError` (one line) when a bucket the
    reload would add cannot go where it is."""
    kept: list[str] = []
    data = new.model_dump()
    for dotted in RESTART_ONLY:
        was = _get(old, dotted)
        if not _same(was, _get(new, dotted)):
            _put(data, dotted, was)
            kept.append(f"{dotted} changes need a restart; keeping {_show(was)}")
    base = config_from(data, source)
    buckets, outputs = _keep_outputs(old, base, kept)
    config = with_buckets(base, buckets, outputs, source)
    before = {b.name: b for b in old.buckets}
    removed = [name for name in before if name not in outputs]
    changes = [f"bucket {name} removed" for name in removed]
    added: list[BucketConfig] = []
    for bucket in config.buckets:
        was_b = before.get(bucket.name)
        if was_b is not None and _identity(was_b) == _identity(bucket):
            continue
        # Only a new root is checked: the running one may hold its notes (allowed at start: the watcher
        # was told to leave them alone), and its notes dir is kept.
        problem = (
            None if was_b is not None and _root(was_b) == _root(bucket) else placement_problem(config, bucket)
        )
        if problem is not None:
            raise ConfigError(f"{source}: buckets.{bucket.name}: {problem}")
        added.append(bucket)
        if was_b is None:
            changes.append(f"bucket {bucket.name} added ({bucket.path})")
        else:
            removed.append(bucket.name)
            changes.append(f"bucket {bucket.name} changed (path, patterns or ignore)")
    changes += _field_changes(old, config)
    return ReloadPlan(config, changes, kept, removed, added)


def _keep_outputs(old: Config, base: Config, kept: list[str]) -> tuple[list[BucketConfig], dict[str, Path]]:
    """The buckets to run with and the notes dir of each: a running bucket keeps its own (with a warning
    when the file would move it), and a new bucket whose notes would mix with a kept one stays out."""
    before = {b.name: old.bucket_output(b) for b in old.buckets}
    outputs: dict[str, Path] = {}
    moved: list[str] = []  # (a list: the first clash named is the same every time)
    for bucket in base.buckets:
        target = base.bucket_output(bucket)
        was = before.get(bucket.name)
        if was is not None and target != was:
            kept.append(f"buckets.{bucket.name}.output changes need a restart; keeping {was} (not {target})")
            moved.append(bucket.name)
            target = was
        outputs[bucket.name] = target
    buckets = []
    for bucket in base.buckets:
        clash = next(
            (n for n in moved if bucket.name not in before and overlap(outputs[bucket.name], outputs[n])),
            None,
        )
        if clash is not None:
            kept.append(
                f"buckets.{bucket.name} is not added: its notes dir {outputs[bucket.name]} would mix with "
                f"bucket {clash!r}'s, kept at {outputs[clash]}; give it its own output, or restart"
            )
            del outputs[bucket.name]
        else:
            buckets.append(bucket)
    return buckets, outputs


def with_buckets(base: Config, buckets: list[BucketConfig], outputs: dict[str, Path], source: str) -> Config:
    """`base` with these buckets, each writing to its notes dir in `outputs`: spelled out as the bucket's
    own `output` when the sharing rule of `Config.bucket_output` would now put it elsewhere (a bucket left
    alone sharing `service.output` would move up from `<output>/<name>`). Raises ConfigError."""
    data = base.model_dump()
    data["buckets"] = [b.model_dump() for b in buckets]
    config = config_from(data, source)
    if any(config.bucket_output(b) != outputs[b.name] for b in config.buckets):
        data["buckets"] = [b.model_dump() | {"output": outputs[b.name]} for b in buckets]
        config = config_from(data, source)
    return config


def _field_changes(old: Config, new: Config) -> list[str]:
    out = []
    for section in _SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        for name in type(after).model_fields:
            was, now = getattr(before, name), getattr(after, name)
            if not _same(was, now):
                out.append(f"{section}.{name} {_show(was)} -> {_show(now)}")
    for rules in ("skills", "grep"):
        if getattr(old, rules) != getattr(new, rules):
            out.append(f"{rules}: {len(getattr(new, rules))} rule(s)")
    return out


def _identity(bucket: BucketConfig) -> tuple[Any, ...]:
    """What makes a bucket the same bucket to the watcher (its notes dir is compared apart)."""
    return (_root(bucket), tuple(bucket.patterns), tuple(bucket.ignore))


def _root(bucket: BucketConfig) -> Path:
    return bucket.path.expanduser().absolute()


def _get(config: Config, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(config, section), name)


def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    section, name = dotted.split(".")
    data[section][name] = value


def _same(a: Any, b: Any) -> bool:
    # "./notes" and "notes" are one directory: paths are compared as the service uses them.
    if isinstance(a, Path) and isinstance(b, Path):
        return a.expanduser().absolute() == b.expanduser().absolute()
    return bool(a == b)


def _show(value: Any) -> str:
    return str(value) if isinstance(value, Path | str) else repr(value)
