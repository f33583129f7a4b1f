"""Skills: what the worker learns about a file beyond its facts, and shows in the note.

Which skill describes a file:

1. the config's `[[skills]]` rules, in order: the first whose glob matches wins (a glob without "/" is
   matched against the file's name, one with "/" against its path relative to the bucket);
2. otherwise the file's detected type decides (magic bytes first, then the name, as `detect` found it):
   markdown, JSON, CSV/TSV and source code by their text type, images by their signature, ZIP-based and
   TAR files (also compressed, by name) as archives, other text as text, everything else as binary.

Built-in skills live one family per module (`text`, `data`, `code`, `archive`, `image`, `binary`); their
names are `protocol.skills.BUILTIN_SKILLS`, which the coordinator checks a config against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import translate

from protocol.messages import FileFacts, SkillRule
from worker.skills.archive import archive
from worker.skills.base import Section, Skill, SkillInput, SkillLimits, SkillOutput
from worker.skills.binary import binary_skill
from worker.skills.code import code_skill
from worker.skills.data import csv_skill, json_skill
from worker.skills.image import image
from worker.skills.text import markdown_skill, text_skill

__all__ = ["BUILTIN", "Section", "Skill", "SkillChooser", "SkillInput", "SkillLimits", "SkillOutput"]

#: Every built-in skill by name (the names are `protocol.skills.BUILTIN_SKILLS`).
BUILTIN: dict[str, Skill] = {
    "text": text_skill,
    "markdown": markdown_skill,
    "json": json_skill,
    "csv": csv_skill,
    "code": code_skill,
    "archive": archive,
    "image": image,
    "binary": binary_skill,
}

#: The text types (`worker.pipeline.filetypes`) that are source code.
_CODE_TYPES = (
    "python", "javascript", "typescript", "c", "cpp", "csharp", "rust", "go", "java", "kotlin", "swift",
    "ruby", "php", "perl", "lua", "r", "shell",
)  # fmt: skip
_BY_TYPE = {
    "markdown": "markdown",
    "json": "json",
    "csv": "csv",
    "tsv": "csv",
    "zip": "archive",
    "tar": "archive",
    **dict.fromkeys(["png", "jpeg", "gif", "tiff", "bmp", "webp"], "image"),
    **dict.fromkeys(_CODE_TYPES, "code"),
}
#: Compressed tarballs are only tarballs by name: the signature says gzip, xz or bzip2.
_TARBALL = re.compile(r"\.(tar\.(gz|bz2|xz)|tgz|tbz2?|txz)$", re.IGNORECASE)


class SkillChooser:
    """Picks a skill name for a file from the configured rules, then from its detected type."""

    def __init__(self, rules: Iterable[SkillRule] = ()) -> None:
        self._rules: list[tuple[re.Pattern[str], bool, str]] = [
            (re.compile(translate(r.pattern)), "/" in r.pattern, r.skill) for r in rules if r.skill in BUILTIN
        ]

    def choose(self, relpath: str, facts: FileFacts) -> str:
        """The skill for the file at `relpath` (posix, relative to its bucket) with these facts."""
        name = relpath.rpartition("/")[2]
        for pattern, by_path, skill in self._rules:
            if pattern.match(relpath if by_path else name):
                return skill
        if facts.file_type in _BY_TYPE:
            return _BY_TYPE[facts.file_type]
        if _TARBALL.search(name):
            return "archive"
        return "text" if facts.is_text else "binary"
