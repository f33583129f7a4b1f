"""What a skill is given and what it gives back.

A skill looks at one file the pipeline has already opened safely and described (`FileFacts`) and returns
what it learned: `fields` for the note's summary table and the record, `sections` of markdown for the
note's body, and `tags`. Skills never write files, never follow paths of their own, and never raise
anything but `JobError` (a `FileContentError` for a file they refuse, such as a zip bomb): the pipeline
turns that into a categorized ERROR record.

Content is handed over, not re-read: `content` holds the file's bytes when the file is at most
`SkillLimits.max_content_bytes` (the pipeline already read them to hash the file), and `text` decodes them
once with the detected encoding. A skill that needs more (an archive's directory) reads through `fd`, a
read-only descriptor positioned nowhere in particular (use `os.pread`), within its own limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from protocol.messages import FileFacts

#: A field's value: what the note's table and the record's JSON can both show.
FieldValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class SkillLimits:
    """Bounds every built-in skill keeps, whatever the file claims about itself."""

    max_content_bytes: int = 8 * 1024 * 1024  # files up to this size are handed over in memory
    max_list_items: int = 50  # headings, links, keys, archive entries shown in a note
    max_json_depth: int = 512  # deeper is refused (FileContent), never parsed recursively
    max_archive_entries: int = 10_000  # more is refused as a suspected archive bomb
    max_archive_unpacked_bytes: int = 1024**3  # declared total; more is refused
    max_archive_ratio: int = 200  # declared unpacked / packed size of one entry; more is refused
    max_csv_rows: int = 1_000_000  # counting stops here (the note says "at least")


@dataclass(frozen=True)  # no slots: `text` is a cached_property
class SkillInput:
    """One file, as the pipeline knows it."""

    name: str  # the file's name (its relative path's last part)
    relpath: str  # posix, relative to the bucket
    facts: FileFacts
    content: bytes | None  # all of it, or None when larger than limits.max_content_bytes
    fd: int  # read-only, for skills that read more than `content` (use os.pread)
    limits: SkillLimits = SkillLimits()
    path: str = ""  # absolute; handler skills are given it (built-in skills never reopen the file)

    @cached_property
    def text(self) -> str | None:
        """`content` decoded with the detected encoding (bad bytes replaced), or None for binary/large."""
        if self.content is None or not self.facts.is_text:
            return None
        # The encoding names FileFacts uses are Python codecs ("ascii" text decodes as UTF-8, which it is).
        codec = "utf-8" if self.facts.encoding in (None, "ascii") else self.facts.encoding
        text = self.content.decode(codec, errors="replace")
        return text.removeprefix("\ufeff")  # a UTF-16/32 BOM decodes to U+FEFF


@dataclass(frozen=True, slots=True)
class Section:
    """A titled part of the note's body: markdown lines, already safe (see `worker.skills.md`)."""

    title: str
    lines: list[str]


@dataclass(slots=True)
class SkillOutput:
    """What a skill learned. `fields` keep their order in the note's table."""

    fields: dict[str, FieldValue] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


class Skill(Protocol):
    """A skill is any callable from a `SkillInput` to a `SkillOutput`."""

    def __call__(self, inp: SkillInput, /) -> SkillOutput: ...
