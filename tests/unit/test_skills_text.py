"""The text and markdown skills, and how a file's skill is chosen."""

from __future__ import annotations

import pytest

from protocol.messages import FileFacts, SkillRule
from worker.skills import SkillChooser, SkillInput, SkillLimits
from worker.skills.text import markdown_skill, text_skill


def text_input(text: str, name: str = "a.md", *, limits: SkillLimits | None = None) -> SkillInput:
    data = text.encode()
    facts = FileFacts(
        size=len(data), sha256="0" * 64, file_type="markdown", mime="text/markdown", is_text=True,
        encoding="utf-8", line_count=text.count("\n"), word_count=len(text.split()),
    )  # fmt: skip
    return SkillInput(
        name=name, relpath=name, facts=facts, content=data, fd=-1, limits=limits or SkillLimits()
    )


def facts(file_type: str, *, is_text: bool = True) -> FileFacts:
    return FileFacts(size=1, sha256="0" * 64, file_type=file_type, mime="x/y", is_text=is_text)


def test_markdown_outline_links_tags_and_front_matter() -> None:
    out = markdown_skill(
        text_input(
            "---\ntitle: T\nauthors:\n  - a\n---\n# One\ntext [[Two|2]] and [[Three#x]] #tag #2024 #a/b\n"
            "```\n# not a heading [[nope]] #nope\n```\n## Two\n[site](https://e.org) and #tag again\n"
        )
    )
    assert out.fields == {"headings": 2, "wikilinks": 2, "links": 1, "tags": 2, "front_matter": 2}
    sections = {s.title: s.lines for s in out.sections}
    assert sections["Outline"] == ["- One", "  - Two"]
    assert sections["Front matter"] == ["- `title`", "- `authors`"]
    assert sections["Links"] == ["- [[Two]]", "- [[Three]]", "- `https://e.org`"]
    assert sections["Tags"] == ["- `#tag`", "- `#a/b`"]


def test_markdown_lists_are_capped_and_say_how_many_are_left_out() -> None:
    out = markdown_skill(
        text_input("".join(f"# H{i}\n" for i in range(30)), limits=SkillLimits(max_list_items=5))
    )
    outline = next(s.lines for s in out.sections if s.title == "Outline")
    assert outline[-1] == "- … and 25 more" and len(outline) == 6


def test_an_unclosed_front_matter_block_is_body_text() -> None:
    out = markdown_skill(text_input("---\n# Heading\n"))
    assert out.fields["front_matter"] is None and out.fields["headings"] == 1


def test_text_skill_reports_the_longest_line() -> None:
    assert text_skill(text_input("ab\nabcdef\n\n", name="a.txt")).fields == {"longest_line": 6}


@pytest.mark.parametrize(
    ("relpath", "file_type", "is_text", "expected"),
    [
        ("notes/a.md", "markdown", True, "markdown"),
        ("a.json", "json", True, "json"),
        ("a.tsv", "tsv", True, "csv"),
        ("src/a.go", "go", True, "code"),
        ("a.jar", "zip", False, "archive"),
        ("a.tar.gz", "gzip", False, "archive"),
        ("a.gz", "gzip", False, "binary"),
        ("shot", "png", False, "image"),
        ("a.log", "log", True, "text"),
        ("a.bin", "binary", False, "binary"),
    ],
)
def test_the_detected_type_chooses_when_no_rule_matches(
    relpath: str, file_type: str, is_text: bool, expected: str
) -> None:
    assert SkillChooser().choose(relpath, facts(file_type, is_text=is_text))[0] == expected


def test_configured_rules_come_first_and_the_first_match_wins() -> None:
    chooser = SkillChooser(
        [
            SkillRule(pattern="*.log", skill="text"),
            SkillRule(pattern="exports/*.txt", skill="csv"),  # with "/": the relative path
            SkillRule(pattern="*.txt", skill="markdown"),
        ]
    )
    assert chooser.choose("exports/2026/a.txt", facts("text"))[0] == "csv"
    assert chooser.choose("b.txt", facts("text"))[0] == "markdown"
    assert chooser.choose("x/y.log", facts("log"))[0] == "text"
    assert chooser.choose("z.py", facts("python"))[0] == "code"
