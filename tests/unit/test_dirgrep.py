"""Directory grep: ripgrep, GNU grep and Python give the same matches; a missing tool falls back with the
reason recorded; answers are cached across a burst; a directory rule reaches the note and the facts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from protocol.messages import GrepRule
from worker.pipeline.grep import GrepRules
from worker.pipeline.process import process_file
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep

REGEX = r"invoice-\d+"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "a.txt").write_text("invoice-12 here\nnothing\n")
    (root / "sub" / "b.md").write_text("x\ninvoice-7 and invoice-8\n")
    (root / ".hidden" / "c.txt").write_text("invoice-1\n")  # hidden: skipped by every tool
    (root / ".d.txt").write_text("invoice-2\n")
    (root / "bin.dat").write_bytes(b"invoice-3\x00binary")  # binary: skipped by every tool
    (root / "weird: name.txt").write_text("see invoice-99\n")
    return root


def only(*names: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH holds only these tools (symlinked), to play "rg is not installed"."""
    bin_dir = tmp_path / ("bin-" + "-".join(names))
    bin_dir.mkdir()
    for name in names:
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed here")
        (bin_dir / name).symlink_to(found)
    return {**os.environ, "PATH": str(bin_dir)}


EXPECTED = [
    ("a.txt", 1, "invoice-12 here"),
    ("sub/b.md", 2, "invoice-7 and invoice-8"),
    ("weird: name.txt", 1, "see invoice-99"),
]


@pytest.mark.parametrize("tools", [("rg",), ("grep",), ()])
def test_every_tool_gives_the_same_matches(tree: Path, tmp_path: Path, tools: tuple[str, ...]) -> None:
    env = only(*tools, tmp_path=tmp_path)
    found = DirectoryGrep(Breakers(), env=env).search(REGEX, str(tree))
    assert [(m.path, m.line, m.text) for m in found.matches] == EXPECTED
    assert found.tool == (tools[0] if tools else "python")


@pytest.mark.parametrize("tools", [("rg",), ("grep",), ()])
def test_a_bucket_under_a_hidden_directory_is_searched_by_every_tool(
    tree: Path, tmp_path: Path, tools: tuple[str, ...]
) -> None:
    # grep's --exclude-dir matched the hidden component of the path it was given and skipped everything.
    moved = tmp_path / ".local" / "bucket"
    moved.parent.mkdir()
    tree.rename(moved)
    found = DirectoryGrep(Breakers(), env=only(*tools, tmp_path=tmp_path)).search(REGEX, str(moved))
    assert [(m.path, m.line, m.text) for m in found.matches] == EXPECTED


def test_a_missing_ripgrep_falls_back_to_grep_and_says_why(tree: Path, tmp_path: Path) -> None:
    found = DirectoryGrep(Breakers(), env=only("grep", tmp_path=tmp_path)).search(REGEX, str(tree))
    assert found.tool == "grep" and found.fallback_reason == "rg: not installed"
    nothing = DirectoryGrep(Breakers(), env=only(tmp_path=tmp_path)).search(REGEX, str(tree))
    assert nothing.tool == "python" and nothing.fallback_reason == "rg: not installed; grep: not installed"


def test_a_burst_reuses_one_search_until_the_cache_expires(tree: Path) -> None:
    now = [100.0]
    grep = DirectoryGrep(Breakers(), cache_s=10, clock=lambda: now[0])
    first = grep.search(REGEX, str(tree))
    (tree / "new.txt").write_text("invoice-5\n")
    assert grep.search(REGEX, str(tree)) is first  # within the window: the same answer
    now[0] += 11
    assert ("new.txt", 1, "invoice-5") in [
        (m.path, m.line, m.text) for m in grep.search(REGEX, str(tree)).matches
    ]


def test_a_directory_rule_reaches_the_facts_and_the_note(tree: Path, tmp_path: Path) -> None:
    rules = GrepRules([GrepRule(name="refs", regex=REGEX, scope="directory", tags=["refs"])])
    dirgrep = DirectoryGrep(Breakers(), env=only("grep", tmp_path=tmp_path))
    note = tmp_path / "a.txt.obs.md"
    facts = process_file(
        str(tree / "a.txt"), str(note), bucket="inbox", relpath="a.txt", worker="w",
        max_input_bytes=1 << 20, preview_lines=2, grep=rules, dirgrep=dirgrep,
    )  # fmt: skip
    assert [(m.path, m.line) for m in facts.grep_matches] == [
        ("a.txt", 1),
        ("sub/b.md", 2),
        ("weird: name.txt", 1),
    ]
    assert facts.recovery is not None and (facts.recovery.fallback, facts.recovery.reason) == (
        "grep",
        "rg: not installed",
    )
    text = note.read_text()
    assert "- **refs** (3 lines)" in text and "  - `sub/b.md` line 2: `invoice-7 and invoice-8`" in text


def test_ripgreps_config_file_and_ignore_files_change_nothing(tree: Path, tmp_path: Path) -> None:
    (tree / ".ignore").write_text("a.txt\n")  # must not hide a match
    (tree / ".gitignore").write_text("sub/\n")
    config = tmp_path / "rgrc"
    config.write_text("--max-count=0\n")  # would hide every match if ripgrep read it
    env = {**only("rg", tmp_path=tmp_path), "RIPGREP_CONFIG_PATH": str(config)}
    found = DirectoryGrep(Breakers(), env=env).search(REGEX, str(tree))
    assert [(m.path, m.line, m.text) for m in found.matches] == EXPECTED


# -- with context lines (the `[dirs:PATH]` sections of `.bucket-include`) ---------------------------------


def test_context_output_parses_matches_context_lines_and_separators() -> None:
    from worker.tools.grep_context import parse

    output = (
        b"./a.txt\x001-before\n./a.txt\x002:hit: with colon\r\n--\n"
        b"./weird: 3-name.txt\x0010:x-y\n"
        b"--\nnoise without a nul\n./cut\x0012"  # the last line was cut by the output cap
    )
    assert [(g.path, g.line, g.text, g.match) for g in parse(output)] == [
        ("a.txt", 1, "before", False),
        ("a.txt", 2, "hit: with colon", True),
        ("weird: 3-name.txt", 10, "x-y", True),
    ]


@pytest.mark.parametrize("tools", [("rg",), ("grep",), ()])
def test_a_hidden_directory_given_by_name_is_searched_by_every_tool(
    tmp_path: Path, tools: tuple[str, ...]
) -> None:
    root = tmp_path / "bucket"
    (root / ".config" / ".deeper").mkdir(parents=True)
    (root / ".config" / "a.ini").write_text("one\nTODO\n")
    (root / ".config" / ".deeper" / "b.ini").write_text("TODO hidden below: skipped\n")
    grep = DirectoryGrep(Breakers(), env=only(*tools, tmp_path=tmp_path))
    fd = os.open(root / ".config", os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = grep.search_context(
            ["TODO"], str(root / ".config"), fd, context_lines=2, max_matches=10, max_bytes=1000
        )
    finally:
        os.close(fd)
    assert [(g.path, g.line, g.match) for g in found.lines] == [("a.ini", 1, False), ("a.ini", 2, True)]
    assert found.tool == (tools[0] if tools else "python") and found.complete
