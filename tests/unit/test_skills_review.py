"""Hostile inputs found by review: each once hung a worker, blew up its memory, broke a note or jammed a
breaker. Timing bounds here are guards against quadratic or unbounded work, not benchmarks."""

from __future__ import annotations

import errno
import io
import sys
import tarfile
import time
from pathlib import Path

import pytest

from protocol.messages import FileFacts, SkillRule
from worker.pipeline.errors import FileContentError, JobError
from worker.skills import SkillChooser, SkillInput
from worker.skills import command as command_skill
from worker.skills.archive import archive
from worker.skills.command import CommandSkill
from worker.skills.text import markdown_skill
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep


def text_input(data: bytes, name: str, path: str = "") -> SkillInput:
    facts = FileFacts(size=len(data), sha256="0" * 64, file_type="text", mime="text/plain", is_text=True)
    return SkillInput(name=name, relpath=name, facts=facts, content=data, fd=-1, path=path)


def test_a_tar_with_a_huge_long_name_header_is_refused_before_it_is_read() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(tarfile.TarInfo("n" * 2_000_000), io.BytesIO(b""))
    data = buf.getvalue()
    facts = FileFacts(size=len(data), sha256="0" * 64, file_type="bzip2", mime="x", is_text=False)
    started = time.perf_counter()
    with pytest.raises(FileContentError) as info:
        archive(SkillInput(name="a.tar.bz2", relpath="a.tar.bz2", facts=facts, content=data, fd=-1))
    assert info.value.code == "EBOMB" and time.perf_counter() - started < 5


def test_a_heading_line_of_spaces_is_linear() -> None:
    line = b"# a" + b" " * 8000 + b"b\n"
    started = time.perf_counter()
    out = markdown_skill(text_input(line * 300, "a.md"))
    assert out.fields["headings"] == 300 and time.perf_counter() - started < 5


def test_the_python_directory_grep_is_linear_on_a_file_matching_every_line(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("hit\n" * 500_000)
    started = time.perf_counter()
    found = DirectoryGrep(Breakers(), tools=("python",)).search("hit", str(tmp_path))
    assert len(found.matches) == 200 and time.perf_counter() - started < 5


def test_command_output_cannot_close_the_fence(tmp_path: Path) -> None:
    code = "print('```'); print('# Injected heading'); print('````')"
    rule = SkillRule(pattern="*", command=[sys.executable, "-c", code, "{input}"])
    source = tmp_path / "a.txt"
    source.write_text("x")
    out = CommandSkill(rule, Breakers(), SkillChooser().builtin_for)(text_input(b"x", "a.txt", str(source)))
    fence, *inside, closing = out.sections[0].lines
    assert fence == closing == "`````" and inside == ["```", "# Injected heading", "````"]


def test_a_command_that_cannot_be_started_counts_against_its_breaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(command_skill, "run_command", no_fork)
    breakers = Breakers(failure_threshold=1, cooldown_s=0)
    skill = CommandSkill(
        SkillRule(pattern="*", command=["tool", "{input}"]), breakers, SkillChooser().builtin_for
    )
    for _ in range(2):  # the second call is the half-open probe: it must report, not stay half-open forever
        with pytest.raises(JobError) as info:
            skill(text_input(b"x", "a.txt", str(tmp_path / "a.txt")))
        assert (info.value.category, info.value.code, info.value.retryable) == (
            "ExternalTool",
            "ESPAWN",
            True,
        )
    assert breakers.snapshot()["tool"]["state"] == "open"
