"""CONFIG_DUMP.md: the effective configuration, every setting with where it came from, and whether the
configuration and the start-up checks pass.

`render_config_dump` is pure: the running `Config` (or its `model_dump()`), the sources from
`coordinator.provenance.config_sources(path, overrides)`, the validation result and the start-up checks
in, the note's text out. Lists of tables (buckets, skills, grep rules) are shown per item and key
(`buckets[0].path`); sources are default, file (with its path), env (with the variable) or cli (see
`coordinator.provenance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from coordinator.provenance import CLI, DEFAULT, FILE_PREFIX, flatten, source_of
from coordinator.reports.markdown import (
    Cell,
    Md,
    code,
    front_matter,
    table,
    text,
    utc_iso,
    wikilink,
)

if TYPE_CHECKING:
    from coordinator.config import Config
    from protocol.bucket_include import IncludeFile

FILE_NAME = "CONFIG_DUMP.md"
#: Longest value shown in the table (a long command line or glob list is cut with "…").
MAX_VALUE_CHARS = 300
#: Items of a list value shown (`temp_ignore`, a command's argv); the rest are "… N more".
MAX_LIST_ITEMS = 20


@dataclass(frozen=True)
class Check:
    """One start-up check: what was checked, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str = ""


class LayerLike(Protocol):
    """What `sandbox_checks` needs of a sandbox layer report (`protocol.sandbox.LayerReport`)."""

    @property
    def name(self) -> str: ...
    @property
    def active(self) -> bool: ...
    @property
    def detail(self) -> str: ...


def sandbox_checks(reports: Iterable[LayerLike], required: Sequence[str]) -> list[Check]:
    """One check per sandbox layer the start-up probe reported: a required layer must be verified, one
    that is not required passes either way (its detail says whether it is there). `required` is what
    `Jails.required` returned (or `sandbox.require` as configured)."""
    checks = []
    for layer in reports:
        needed = layer.name in required
        state = "verified" if layer.active else f"unavailable{': ' + layer.detail if layer.detail else ''}"
        checks.append(
            Check(
                f"sandbox layer {layer.name}",
                layer.active or not needed,
                f"{'required' if needed else 'optional'}, {state}",
            )
        )
    reported = {c.name.removeprefix("sandbox layer ") for c in checks}
    for name in required:
        if name not in reported:
            checks.append(Check(f"sandbox layer {name}", False, "required, not reported by the probe"))
    return checks


def render_config_dump(
    config: Config | Mapping[str, Any] | None,
    *,
    generated: datetime | float,
    sources: Mapping[str, str],
    config_path: Path | str | None = None,
    validation_error: str | None = None,
    checks: Sequence[Check] = (),
    run_id: str | None = None,
    include_rules: Mapping[str, Sequence[IncludeFile]] | None = None,
) -> str:
    """The text of CONFIG_DUMP.md.

    - `config`: the running `Config` (or a `model_dump(mode="json")` of one); None when there is none (a
      config that never validated), and then only the validation and checks are shown.
    - `sources`: `config_sources(path, overrides)`: dotted key → "file:<path>" | "cli"; others are
      defaults.
    - `config_path`: the file read (`provenance.config_file(path)`), None for the built-in defaults.
    - `validation_error`: None when the configuration validates, else its one-line `ConfigError`
      (`provenance.validation_error(path, overrides)`).
    - `checks`: the start-up checks (`sandbox_checks(...)` and any others).
    - `include_rules`: each bucket's `.bucket-include` files, parsed (`include_rules.bucket_rule_files`);
      None when reading them is off.
    """
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    rows = flatten(data) if isinstance(data, Mapping) else {}
    tally = {DEFAULT: 0, "file": 0, "env": 0, CLI: 0}
    table_rows: list[list[Cell]] = []
    for key, value in rows.items():
        source = source_of(key, sources)
        kind = "file" if source.startswith(FILE_PREFIX) else "env" if source.startswith("env:") else source
        tally[kind] = tally.get(kind, 0) + 1
        table_rows.append([code(key), _shown(value), _source(source)])
    failed = [c for c in checks if not c.ok]
    valid = validation_error is None
    front = front_matter(
        {
            "type": "open-buckets-config-dump",
            "run_id": run_id,
            "generated": utc_iso(generated),
            "config_file": str(config_path) if config_path is not None else None,
            "valid": valid,
            "checks_failed": len(failed),
            "settings": len(rows),
            "sources": tally,
            "tags": ["openbuckets", "openbuckets/report", "openbuckets/config"],
        }
    )
    shown_file = code(config_path) if config_path is not None else "none (built-in defaults)"
    body = [
        "# Configuration",
        "",
        f"Generated {utc_iso(generated)}. Config file: {shown_file}. See also {wikilink('RUN_SUMMARY')}.",
        "",
        *_validation_section(validation_error, checks),
        "## Effective configuration",
        "",
    ]
    if table_rows:
        counts = ", ".join(f"{n:,} {name}" for name, n in tally.items() if n)
        body += [
            f"{len(table_rows):,} settings: {counts}. No setting is read from the environment.",
            "",
            *table(("Setting", "Value", "Source"), table_rows, limit=MAX_VALUE_CHARS),
        ]
    else:
        body.append("No effective configuration (it did not validate).")
    body += _include_section(include_rules)
    return front + "\n".join(body) + "\n"


def _include_section(buckets: Mapping[str, Sequence[IncludeFile]] | None) -> list[str]:
    """Every `.bucket-include` rule per bucket, with the file and line it came from."""
    lines = ["", "## Bucket include rules", ""]
    if buckets is None:
        return [*lines, "Not read (`notes.bucket_include = false`)."]
    lines += [
        "A file's rules are merged most specific first: the bucket's `.{ext}.bucket-include`, the global "
        "profile's, the bucket's `.bucket-include`, the global one, then the default excludes. "
        "`ob-ctl config --for FILE` shows the merged rules for one file.",
        "",
    ]
    for bucket, files in buckets.items():
        lines += [f"### {text(bucket, 200)}", ""]
        if not files:
            lines += ["No rule files: its notes have no Related Context or Grep Results.", ""]
            continue
        rows: list[list[Cell]] = []
        for f in files:
            rows += [[code(f.source), r.line, "include", code(r.pattern)] for r in f.includes]
            rows += [[code(f.source), r.line, "exclude", code("!" + r.pattern)] for r in f.excludes]
            for d in f.dirs:
                patterns = ", ".join(p.pattern for p in d.patterns) or "(none)"
                rows.append([code(f.source), d.line, "dirs", code(f"[dirs:{d.path}] {patterns}")])
            rows += [
                [code(f.source), p.line, Md("**skipped**"), text(f"{p.message}: {p.text}")]
                for p in f.problems
            ]
        lines += [*table(("File", "Line", "Kind", "Rule"), rows, limit=MAX_VALUE_CHARS), ""]
    return lines


def _validation_section(error: str | None, checks: Sequence[Check]) -> list[str]:
    lines = ["## Validation", ""]
    if error is None:
        lines += ["Configuration: **ok**.", ""]
    else:
        lines += ["> [!failure] The configuration does not validate", f"> {text(error, 1000)}", ""]
    if checks:
        rows: list[list[Cell]] = [
            [text(c.name), Md("ok") if c.ok else Md("**FAILED**"), c.detail or None] for c in checks
        ]
        passed = sum(c.ok for c in checks)
        lines += [
            f"Start-up checks: {passed} of {len(checks)} passed.",
            "",
            *table(("Check", "Result", "Detail"), rows),
            "",
        ]
    else:
        lines += ["Start-up checks: none given.", ""]
    return lines


def _shown(value: Any) -> Cell:
    """A setting's value: numbers and booleans as they are, null as "—", strings and lists as code (what
    one would write in the TOML file, near enough)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return code(value, MAX_VALUE_CHARS)
    if isinstance(value, list):
        if not value:
            return code("[]")
        items = [code(item, MAX_VALUE_CHARS) for item in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            items.append(Md(f"… {len(value) - MAX_LIST_ITEMS:,} more"))
        return Md(", ".join(items))
    return code(value, MAX_VALUE_CHARS)


def _source(source: str) -> Cell:
    if source.startswith(FILE_PREFIX):
        return Md(f"file {code(source.removeprefix(FILE_PREFIX))}")
    if source.startswith("env:"):
        return Md(f"env {code(source.removeprefix('env:'))}")
    return source
