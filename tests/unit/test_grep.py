"""Grep rules: numbered matching lines, one entry per line, per-bucket rules, caps, and what reaches the
note and the facts."""

from __future__ import annotations

import time
from pathlib import Path

from protocol.messages import GrepRule
from worker.pipeline.grep import MAX_MATCHES_PER_RULE, GrepRules
from worker.pipeline.process import process_file

TEXT = "alpha TODO one\nbeta\nTODO twice TODO\n\nlast line FIXME"


def test_matching_lines_are_numbered_once_each() -> None:
    rules = GrepRules([GrepRule(name="todo", regex="TODO|FIXME", tags=["todo"])])
    found = rules.scan(TEXT, "inbox")
    assert [(m.rule, m.line, m.text) for m in found.matches] == [
        ("todo", 1, "alpha TODO one"),
        ("todo", 3, "TODO twice TODO"),
        ("todo", 5, "last line FIXME"),
    ]
    assert found.counts == {"todo": 3} and found.tags == ["todo"]


def test_rules_apply_only_to_their_buckets_and_silent_rules_leave_no_trace() -> None:
    rules = GrepRules(
        [
            GrepRule(name="beta", regex="beta", buckets=["other"]),
            GrepRule(name="none", regex="zzz", tags=["never"]),
            GrepRule(name="last", regex="^last", tags=["end"]),
        ]
    )
    found = rules.scan(TEXT, "inbox")
    assert found.counts == {"last": 1} and found.tags == ["end"]
    assert rules.scan(TEXT, "other").counts == {"beta": 1, "last": 1}


def test_matches_are_capped_per_rule_but_all_are_counted() -> None:
    text = "hit\n" * (MAX_MATCHES_PER_RULE + 25)
    found = GrepRules([GrepRule(name="h", regex="hit")]).scan(text, "b")
    assert len(found.matches) == MAX_MATCHES_PER_RULE and found.counts == {"h": MAX_MATCHES_PER_RULE + 25}


def test_an_empty_matching_regex_stays_linear() -> None:
    text = "x" * 200_000 + "\n" + "y" * 200_000
    started = time.perf_counter()
    found = GrepRules([GrepRule(name="any", regex="z*")]).scan(text, "b")
    assert found.counts == {"any": 2}
    assert time.perf_counter() - started < 2  # a guard against quadratic line counting, not a benchmark


def test_matches_reach_the_facts_and_the_note(tmp_path: Path) -> None:
    source = tmp_path / "plan.txt"
    source.write_text(TEXT)
    note = tmp_path / "plan.txt.obs.md"
    rules = GrepRules([GrepRule(name="todo", regex="TODO|FIXME", tags=["todo"])])
    facts = process_file(
        str(source), str(note), bucket="inbox", relpath="plan.txt", worker="w",
        max_input_bytes=1 << 20, preview_lines=2, grep=rules,
    )  # fmt: skip
    assert [m.line for m in facts.grep_matches] == [1, 3, 5]
    text = note.read_text()
    assert '"todo"]' in text.split("---")[1]  # the rule's tag is on the note
    assert "## Grep matches\n\n- **todo** (3 lines)\n  - line 1: `alpha TODO one`" in text


def test_binary_files_are_not_grepped(tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(b"\x00TODO\x00" * 100)
    facts = process_file(
        str(source), str(tmp_path / "n.md"), bucket="inbox", relpath="blob.bin", worker="w",
        max_input_bytes=1 << 20, preview_lines=2, grep=GrepRules([GrepRule(name="t", regex="TODO")]),
    )  # fmt: skip
    assert facts.grep_matches == []
