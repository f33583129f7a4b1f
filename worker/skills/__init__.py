"""Skills: what the worker learns about a file beyond its facts, and shows in the note.

Which skill describes a file:

1. the config's `[[skills]]` rules, in order: the first whose glob matches wins (a glob without "/" is
   matched against the file's name, one with "/" against its path relative to the bucket). A rule names a
   built-in skill, a handler (the user's own Python function, `worker.skills.handler`) or an external
   command (`worker.skills.command`);
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
from worker.skills.command import CommandSkill
from worker.skills.data import csv_skill, json_skill
from worker.skills.handler import HandlerSkill
from worker.skills.image import image
from worker.skills.text import markdown_skill, text_skill
from worker.tools.breaker import Breakers

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
    """Picks the skill for a file from the configured rules, then from its detected type."""

    def __init__(self, rules: Iterable[SkillRule] = (), breakers: Breakers | None = None) -> None:
        self._rules: list[tuple[re.Pattern[str], bool, str, Skill]] = []
        handlers: dict[str, HandlerSkill] = {}  # one import per handler, however many rules name it
        breakers = breakers or Breakers()
        for rule in rules:
            if rule.handler:
                skill: Skill = handlers.setdefault(rule.handler, HandlerSkill(rule.handler))
                name = rule.handler
            elif rule.command:
                skill = CommandSkill(rule, breakers, self.builtin_for)
                name = f"command:{rule.command[0]}"
            elif rule.skill in BUILTIN:
                skill, name = BUILTIN[rule.skill], rule.skill
            else:
                continue  # the coordinator validated the config; a newer one may know more skills
            self._rules.append((re.compile(translate(rule.pattern)), "/" in rule.pattern, name, skill))

    def choose(self, relpath: str, facts: FileFacts) -> tuple[str, Skill]:
        """The skill (its name, and itself) for the file at `relpath` (posix, relative to its bucket)."""
        name = relpath.rpartition("/")[2]
        for pattern, by_path, skill_name, skill in self._rules:
            if pattern.match(relpath if by_path else name):
                return skill_name, skill
        return _builtin(name, facts)

    def builtin_for(self, inp: SkillInput) -> tuple[str, Skill]:
        """The built-in skill for a file whose configured skill cannot run (a command's fallback)."""
        return _builtin(inp.name, inp.facts)


def _builtin(name: str, facts: FileFacts) -> tuple[str, Skill]:
    if facts.file_type in _BY_TYPE:
        builtin = _BY_TYPE[facts.file_type]
    elif _TARBALL.search(name):
        builtin = "archive"
    else:
        builtin = "text" if facts.is_text else "binary"
    return builtin, BUILTIN[builtin]
