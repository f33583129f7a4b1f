"""Render a file's facts as an Obsidian note, and write notes atomically.

A note is YAML front matter (machine-readable facts, every string JSON-quoted so no value can break the
YAML) followed by a markdown body: a title, a wikilink to its bucket's `CONTEXT_TREE-<bucket>` note, a
summary table (the facts, then what the skill found), the skill's sections, the grep matches, the context
from `.bucket-include` rules (Related Context, Grep Results) and the file's Content: its text in a code
fence it cannot close early (the sections are rendered by `worker.pipeline.note_sections`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from protocol.messages import FileFacts
from protocol.note_files import job_temp_name
from worker.pipeline.context import NoteContext
from worker.pipeline.excerpt import Excerpt
from worker.pipeline.grep import GrepResult
from worker.pipeline.note_sections import content_section, grep_section, human_size, related_section
from worker.skills import md
from worker.skills.base import FieldValue, SkillOutput

# Characters JSON leaves raw but YAML does not allow raw in a double-quoted scalar (or reads as line
# breaks): DEL, the C1 controls, the Unicode line/paragraph separators, BOM, non-characters, and the lone
# surrogates Python uses to carry undecodable bytes of a file name.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
_TAG_UNSAFE = re.compile(r"[^a-z0-9_/-]+")
#: What a wikilink target cannot hold (Obsidian: [ ] | # ^ and line breaks), plus controls.
_WIKILINK_UNSAFE = re.compile(r"[\[\]|#^\x00-\x1f\x7f]+")


def render_note(
    *,
    source_path: str,
    bucket: str,
    relpath: str,
    facts: FileFacts,
    content: Excerpt | None,
    processed_at: datetime,
    worker: str,
    found: SkillOutput | None = None,
    job_id: str | None = None,
    grep: GrepResult | None = None,
    context: NoteContext | None = None,
    show_content: bool = True,
) -> str:
    """The full text of the note for one processed file: front matter, title, summary table (the facts,
    then what the skill found), the skill's sections, grep matches, the `.bucket-include` context, and the
    Content section (the file's text, its `content` excerpt; none when `show_content` is off)."""
    name = PurePosixPath(relpath).name or os.path.basename(source_path) or relpath
    found = found or SkillOutput()
    tags = ["openbuckets", f"kind/{_tag(facts.file_type)}"]
    tags += [f"skill/{_tag(facts.skill)}"] if facts.skill else []
    extra = [*found.tags, *(grep.tags if grep else [])]
    tags += [t for t in dict.fromkeys(_tag(t) for t in extra) if t not in ("unknown", *tags)][:20]
    front = _front_matter(
        [
            ("type", "open-buckets-note"),
            ("source", source_path),
            ("bucket", bucket),
            ("relpath", relpath),
            ("size", facts.size),
            ("sha256", facts.sha256),
            ("kind", facts.file_type),
            ("mime", facts.mime),
            ("encoding", facts.encoding),
            ("lines", facts.line_count),
            ("words", facts.word_count),
            ("skill", facts.skill),
            ("processed_at", _utc_iso(processed_at)),
            ("worker", worker),
            ("job", job_id),
            ("tags", tags),
        ]
    )
    # The title is the file's name, which whoever dropped the file chose: escaped, not only kept on one line.
    body = [f"# {md.escape(name, limit=1000)}", "", f"In {context_link(bucket)}: {md.code(relpath)}", ""]
    body += [*_summary(facts, found), ""]
    for section in found.sections:
        body += [f"## {_inline(section.title)}", "", *section.lines, ""]
    if grep and grep.matches:
        body += ["## Grep matches", "", *_grep_lines(grep), ""]
    if context is not None and context.related is not None:
        body += [*related_section(context.related), ""]
    if context is not None and context.greps:
        body += [*grep_section(context), ""]
    if show_content:
        body += content_section(name, facts, content)
    while body and body[-1] == "":
        body.pop()
    return front + "\n".join(body) + "\n"


def write_atomic(path: Path, text: str, owner: str | None = None) -> None:
    """Write `text` (UTF-8) to `path` so readers see the old file or the new one, never a partial one.

    The temp file sits next to the target (same filesystem, so `os.replace` is atomic) and its name starts
    with "." so folder watchers, Obsidian included, ignore it. With an `owner` (the job id) the temp name is
    fixed for that job: a worker killed mid-write leaves a temp file that the job's retry overwrites and
    renames, instead of one that stays forever; two jobs never share one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    name = (
        job_temp_name(path.name, owner) if owner is not None else f".{path.name}.{secrets.token_hex(4)}.tmp"
    )
    temp = path.with_name(name)
    # os.open rather than mkstemp: mkstemp's 0600 would make every note private to the service user.
    exclusive = os.O_EXCL if owner is None else os.O_TRUNC
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | exclusive | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _front_matter(items: list[tuple[str, object]]) -> str:
    lines = ["---"]
    lines += [f"{key}: {_yaml_value(value)}" for key, value in items]
    lines.append("---")
    return "\n".join(lines) + "\n\n"


def _yaml_value(value: object) -> str:
    # JSON is a subset of YAML 1.2: null, numbers, double-quoted strings and flow lists all read back as-is.
    dumped = json.dumps(value, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive times in this codebase are UTC
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tag(file_type: str) -> str:
    # Obsidian tags cannot hold spaces or most punctuation.
    return _TAG_UNSAFE.sub("-", file_type.lower()).strip("-") or "unknown"


def _summary(facts: FileFacts, found: SkillOutput) -> list[str]:
    rows = [
        ("Size", human_size(facts.size)),
        ("Type", f"{facts.file_type} (`{facts.mime}`)"),
        ("Encoding", facts.encoding or "binary"),
    ]
    if facts.is_text:
        rows += [("Lines", f"{facts.line_count:,}"), ("Words", f"{facts.word_count:,}")]
    if facts.skill:
        rows.append(("Skill", facts.skill))
    rows += [(_label(key), _shown(value)) for key, value in found.fields.items()]
    table = ["| Property | Value |", "| --- | --- |"]
    table += [f"| {key} | {_cell(value)} |" for key, value in rows]
    return table


def context_link(bucket: str) -> str:
    """The wikilink to the bucket's context-tree note, `CONTEXT_TREE-<bucket>` (one name per bucket, so
    the link resolves anywhere in the vault even when buckets share an output directory)."""
    safe = _WIKILINK_UNSAFE.sub("-", bucket) or "bucket"
    return f"[[CONTEXT_TREE-{safe}|{safe}]]"


def _grep_lines(grep: GrepResult) -> list[str]:
    lines: list[str] = []
    for rule, count in grep.counts.items():
        lines.append(f"- **{_inline(rule)}** ({count:,} line{'s' if count != 1 else ''})")
        shown = [m for m in grep.matches if m.rule == rule]
        lines += [
            f"  - {md.code(m.path) + ' ' if m.path is not None else ''}line {m.line:,}: {md.code(m.text)}"
            for m in shown
        ]
        if count > len(shown):
            lines.append(f"  - … and {count - len(shown):,} more")
    return lines


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _shown(value: FieldValue) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return value


def _inline(text: str) -> str:
    return md.inline(text, limit=1000)


def _cell(text: str) -> str:
    return md.cell(text, limit=1000)
