"""Every built-in skill, forced onto every awkward input: empty, NUL bytes, invalid UTF-8, one 5 MB line,
deep brackets, random bytes. A skill may refuse a file (a JobError with a category), never crash on it,
and whatever it accepts ends in a note."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from protocol.messages import SkillRule
from protocol.skills import BUILTIN_SKILLS
from worker.pipeline.errors import JobError
from worker.pipeline.process import process_file
from worker.skills import SkillChooser

_rnd = random.Random(5)
INPUTS: dict[str, bytes] = {
    "empty": b"",
    "nul": b"a\x00b\x00" * 1000,
    "bad-utf8": b"caf\xe9 \xff\xfe ok\n" * 100,
    "long-line": b"x" * 5_000_000,
    "brackets": b"[" * 50_000 + b"{" * 50_000,
    "random": bytes(_rnd.randrange(256) for _ in range(20_000)),
    "crlf-csv": b'a;b;"c\r\nd"\r\n1;2;3\r\n' * 50,
    "fake-zip": b"PK\x03\x04" + bytes(100),
    "fake-png": b"\x89PNG\r\n\x1a\n" + b"\xff" * 40,
}


@pytest.mark.parametrize("skill", BUILTIN_SKILLS)
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_a_skill_refuses_or_describes_never_crashes(skill: str, name: str, tmp_path: Path) -> None:
    source = tmp_path / f"{name}.dat"
    source.write_bytes(INPUTS[name])
    note = tmp_path / "note.md"
    chooser = SkillChooser([SkillRule(pattern="*", skill=skill)])
    try:
        facts = process_file(
            str(source), str(note), bucket="b", relpath=source.name, worker="w",
            max_input_bytes=1 << 26, preview_lines=5, skills=chooser,
        )  # fmt: skip
    except JobError as exc:
        assert exc.category == "FileContent" and exc.code in {"EDEPTH", "EBOMB", "ECORRUPT"}, exc
        assert not note.exists()
        return
    assert facts.skill == skill
    text = note.read_text(encoding="utf-8")
    assert text.startswith("---\n") and f'skill: "{skill}"' in text
