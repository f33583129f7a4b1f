"""The fallback for binary files: the pipeline's facts (type, size, sha256) are the description."""

from __future__ import annotations

from worker.skills.base import SkillInput, SkillOutput


def binary_skill(inp: SkillInput) -> SkillOutput:
    """Nothing beyond the facts: a binary file is never interpreted by a skill that does not know it."""
    return SkillOutput(tags=[f"binary/{inp.facts.file_type}"])
