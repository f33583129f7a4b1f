"""The built-in skill names both sides agree on: the coordinator validates a config against them, the
worker implements them (`worker/skills/`)."""

from __future__ import annotations

#: Every built-in skill, in the order `ob-coordinator` lists them.
BUILTIN_SKILLS: tuple[str, ...] = ("text", "markdown", "json", "csv", "code", "archive", "image", "binary")
