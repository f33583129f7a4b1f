"""Command skills with real child processes: output into the note, failures as ExternalTool errors with
the exit code and stderr, the tool's breaker opening into the built-in fallback, a missing tool falling back
at once, and the rate limit making jobs wait rather than fail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from protocol.messages import FileFacts, SkillRule
from worker.pipeline.errors import JobError
from worker.skills import SkillChooser, SkillInput
from worker.skills.command import CommandSkill
from worker.tools.breaker import Breakers

UPPER = "import sys; sys.stdout.write(open(sys.argv[1]).read().upper())"
FAIL = "import sys; sys.stderr.write('cannot read ' + sys.argv[1]); sys.exit(3)"


def make(tmp_path: Path, text: str = "hello\nworld\n") -> SkillInput:
    path = tmp_path / "in put; $(x).txt"  # a hostile name is one argument, never a shell word
    path.write_text(text)
    data = text.encode()
    facts = FileFacts(size=len(data), sha256="0" * 64, file_type="text", mime="text/plain", is_text=True)
    return SkillInput(name=path.name, relpath=path.name, facts=facts, content=data, fd=-1, path=str(path))


def skill(code: str, breakers: Breakers | None = None, **kw: object) -> CommandSkill:
    rule = SkillRule(pattern="*", command=[sys.executable, "-c", code, "{input}"], **kw)  # type: ignore[arg-type]
    return CommandSkill(rule, breakers or Breakers(), SkillChooser().builtin_for)


def test_the_output_becomes_a_section_and_the_run_its_fields(tmp_path: Path) -> None:
    out = skill(UPPER)(make(tmp_path))
    assert out.fields["tool"] == sys.executable and out.fields["exit_code"] == 0
    assert out.fields["output_bytes"] == 12
    (section,) = out.sections
    assert section.title == "Output" and section.lines[1:3] == ["HELLO", "WORLD"]


def test_a_failing_command_is_an_external_tool_error_with_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(JobError) as info:
        skill(FAIL)(make(tmp_path))
    assert (info.value.category, info.value.code) == ("ExternalTool", "EXIT3")
    assert "exited with status 3" in str(info.value) and "cannot read" in str(info.value)


def test_timeouts_and_floods_are_their_own_codes(tmp_path: Path) -> None:
    with pytest.raises(JobError) as slow:
        skill("import time; time.sleep(30)", timeout_s=0.3)(make(tmp_path))
    assert slow.value.code == "ETIMEDOUT"
    with pytest.raises(JobError) as flood:
        skill("import sys; sys.stdout.write('x' * 10_000_000)", max_output_bytes=1000)(make(tmp_path))
    assert flood.value.code == "EOUTPUT"


def test_repeated_failures_open_the_breaker_and_files_fall_back(tmp_path: Path) -> None:
    breakers = Breakers(failure_threshold=2, cooldown_s=60)
    failing = skill(FAIL, breakers)
    for _ in range(2):
        with pytest.raises(JobError):
            failing(make(tmp_path))
    out = failing(make(tmp_path))  # the breaker is open: no run, the built-in skill describes the file
    assert out.fields["fallback"] == "text" and "circuit breaker is open" in str(
        out.fields["fallback_reason"]
    )
    assert "longest_line" in out.fields
    assert breakers.snapshot()[sys.executable]["state"] == "open"


def test_a_missing_tool_falls_back_at_once(tmp_path: Path) -> None:
    rule = SkillRule(pattern="*", command=["ob-no-such-tool-anywhere", "{input}"])
    missing = CommandSkill(rule, Breakers(), SkillChooser().builtin_for)
    for _ in range(2):
        out = missing(make(tmp_path))
        assert out.fields["fallback"] == "text"
        assert "ob-no-such-tool-anywhere is not installed" in str(out.fields["fallback_reason"])


def test_the_rate_limit_makes_jobs_wait_their_turn(tmp_path: Path) -> None:
    limited = skill(UPPER, rate_limit="1/1.5s")
    first, second = limited(make(tmp_path)), limited(make(tmp_path))
    assert "rate_limit_wait_s" not in first.fields
    # The second call waited for the window (1.5 s less however long the first command ran), then ran.
    assert 0 < float(second.fields["rate_limit_wait_s"] or 0) <= 1.5
    assert second.fields["exit_code"] == 0


def test_a_command_rule_is_chosen_by_its_pattern(tmp_path: Path) -> None:
    chooser = SkillChooser([SkillRule(pattern="*.pdf", command=["pdftotext", "{input}", "-"])])
    facts = FileFacts(size=1, sha256="0" * 64, file_type="pdf", mime="application/pdf", is_text=False)
    name, chosen = chooser.choose("docs/a.pdf", facts)
    assert name == "command:pdftotext" and isinstance(chosen, CommandSkill)
