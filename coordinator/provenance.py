"""Where each setting of the effective configuration came from: the built-in default, the config file, or
the command line.

`load_config(path, overrides)` (coordinator/config.py) starts from the model's defaults, lays the TOML
file over them and the command-line overrides (`coordinator.cli.overrides_from`) over that, an override
replacing the whole subtree it names (`buckets` replaces the list). `config_sources` replays the same two
layers on the keys alone, so it can say for every dotted key which layer set it.

Sources are "default", "file:<path>", "env:<VARIABLE>" (`OPENBUCKETS_<SECTION>__<KEY>`, over the file)
and "cli" (over everything), in the order load_config applies them.

Keys are dotted, with list items indexed: `service.workers`, `buckets[0].path`, `grep[1].tags`. A list of
tables (`[[buckets]]`, `[[skills]]`, `[[grep]]`) is split per item and per key; a list of plain values
(`watcher.temp_ignore`) is one key. A key under a list item that neither layer names (a bucket's `name`
derived from its path, `patterns` left out) is "default".
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.config import DEFAULT_CONFIG_PATH, ConfigError, env_overrides, load_config

DEFAULT = "default"
CLI = "cli"
ENV_PREFIX_SOURCE = "env:"
FILE_PREFIX = "file:"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested data (a parsed TOML file, a `model_dump()`) as {dotted key: leaf value}.

    Mappings recurse with ".", non-empty lists of mappings recurse per item with "[i]"; anything else (a
    number, a string, a list of plain values, an empty list) is a leaf.
    """
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list) and data and all(isinstance(item, Mapping) for item in data):
        out = {}
        for i, item in enumerate(data):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: data}


def config_file(path: Path | None) -> Path | None:
    """The file `load_config(path, ...)` reads: `path`, else the default file when it exists, else none."""
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        return DEFAULT_CONFIG_PATH
    return path


def config_sources(path: Path | None, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """{dotted key: "file:<path>" or "cli"} for every key the file or the overrides set; a key of the
    effective config that is not here is a default (`source_of`).

    The file is read again now: if it was edited since the service loaded it (and not reloaded), this
    describes the file as it is. A file that cannot be read or parsed contributes nothing (the validation
    result says why: `validation_error`).
    """
    sources: dict[str, str] = {}
    file = config_file(path)
    if file is not None:
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            data = {}
        origin = f"{FILE_PREFIX}{file}"
        sources.update({key: origin for key in flatten(data)})
    for dotted, (variable, value) in env_overrides().items():
        for key in [k for k in sources if _under(k, dotted)]:
            del sources[key]
        sources.update({key: f"{ENV_PREFIX_SOURCE}{variable}" for key in flatten(value, dotted)})
    for dotted, value in (overrides or {}).items():
        # An override replaces its whole subtree (load_config's _set_dotted), file keys under it included.
        for key in [k for k in sources if _under(k, dotted)]:
            del sources[key]
        sources.update({key: CLI for key in flatten(value, dotted)})
    return sources


def source_of(key: str, sources: Mapping[str, str]) -> str:
    """The source of one dotted key of the effective config: its own, else that of the nearest enclosing
    key that was set as a whole (an override of `sandbox.require` with a list sets `sandbox.require`), else
    "default"."""
    probe = key
    while True:
        if probe in sources:
            return sources[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            return DEFAULT
        probe = probe[:cut]


def validation_error(path: Path | None, overrides: Mapping[str, Any] | None = None) -> str | None:
    """None when `load_config(path, overrides)` and the start-up path checks pass now, else the one-line
    `ConfigError` the CLI would print (what a reload of the file would say)."""
    from coordinator.paths import check_socket_paths

    try:
        check_socket_paths(load_config(path, dict(overrides or {})))
    except ConfigError as exc:
        return str(exc)
    return None


def _under(key: str, dotted: str) -> bool:
    return key == dotted or key.startswith((f"{dotted}.", f"{dotted}["))
