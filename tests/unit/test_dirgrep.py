"""Directory grep: ripgrep, GNU grep and Python give the same matches; a missing tool falls back with the
reason recorded; answers are cached across a burst; a directory rule reaches the note and the facts."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from protocol.messages import GrepRule
from worker.pipeline.context import open_inside
from worker.pipeline.grep import GrepRules
from worker.pipeline.process import process_file
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import ContextResult, DirectoryGrep
from worker.tools.grep_context import GrepLine
from worker.tools.grep_verify import verify

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
    # Paths as printed: the verifier checks them and drops the "./".
    assert [(g.path, g.line, g.text, g.match) for g in parse(output)] == [
        ("./a.txt", 1, "before", False),
        ("./a.txt", 2, "hit: with colon", True),
        ("./weird: 3-name.txt", 10, "x-y", True),
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
        found = grep.search_context(["TODO"], fd, context_lines=2, max_matches=10, max_bytes=1000)
    finally:
        os.close(fd)
    assert [(g.path, g.line, g.match) for g in found.lines] == [("a.ini", 1, False), ("a.ini", 2, True)]
    assert found.tool == (tools[0] if tools else "python") and found.complete


# -- what rg and grep print is checked against the bucket --------------------------------------------


def fake_tool(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """An environment whose PATH finds a `name` running `script` (sh) before the real tools."""
    bin_dir = tmp_path / f"fake-{name}"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/sh\n" + script)
    (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def search(grep: DirectoryGrep, top: Path, patterns: list[str], **kw: int) -> ContextResult:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        args = {"context_lines": 1, "max_matches": 100, "max_bytes": 100_000, **kw}
        return grep.search_context(patterns, fd, **args)
    finally:
        os.close(fd)


def test_verify_keeps_only_lines_the_bucket_holds(tmp_path: Path) -> None:
    top = tmp_path / "d"
    (top / "sub").mkdir(parents=True)
    (top / "a.txt").write_bytes(b"one\r\nTODO two\n\xff bad\nfour")
    (top / "sub" / "b.txt").write_text("TODO\n")
    (tmp_path / "secret.txt").write_text("TODO secret\n")
    (top / "link.txt").symlink_to(tmp_path / "secret.txt")
    (top / "linkdir").symlink_to(tmp_path)
    os.mkfifo(top / "fifo")
    printed = [
        GrepLine("./a.txt", 1, "one", False),
        GrepLine("./a.txt", 2, "TODO two", True),
        GrepLine("./a.txt", 3, "\ufffd bad", False),
        GrepLine("./a.txt", 4, "four", True),  # the last line, without its newline
        GrepLine("./a.txt", 4, "four", True),  # printed twice: shown once
        GrepLine("./sub/b.txt", 1, "TODO", True),
        GrepLine("./sub/b.txt", 2, "forged", True),  # past the end
        GrepLine("./a.txt", 1, "forged", True),  # not what the file says
        GrepLine("./link.txt", 1, "TODO secret", True),  # a symlink (swapped in after the listing)
        GrepLine("./linkdir/secret.txt", 1, "TODO secret", True),  # through a symlinked directory
        GrepLine("./../secret.txt", 1, "TODO secret", True),
        GrepLine("secret.txt", 1, "TODO secret", True),  # no "./": forged by a newline in a name
        GrepLine("./fifo", 1, "x", True),  # not a regular file (and must not block)
    ]
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        kept, dropped = verify(printed, fd, context_lines=1)
    finally:
        os.close(fd)
    assert [(g.path, g.line, g.match) for g in kept] == [
        ("a.txt", 1, False),
        ("a.txt", 2, True),
        ("a.txt", 3, False),
        ("a.txt", 4, True),
        ("sub/b.txt", 1, True),
    ]
    assert dropped == len(printed) - 5


def test_verify_drops_context_left_without_its_match(tmp_path: Path) -> None:
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("before\nTODO\nafter\n")
    printed = [
        GrepLine("./a.txt", 1, "before", False),
        GrepLine("./a.txt", 2, "TODO changed since", True),  # the file changed: the match goes...
        GrepLine("./a.txt", 3, "after", False),  # ...and its context with it
    ]
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert verify(printed, fd, context_lines=1) == ([], 3)
    finally:
        os.close(fd)


def forging_rg(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory with a.txt and a symlink out, and a fake rg printing what ripgrep prints when a.txt was
    swapped for a symlink to a file outside between listing and open (plus a line of a file that is gone)."""
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("TODO real\n")
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    (top / "link").symlink_to(tmp_path / "passwd")
    env = fake_tool(
        tmp_path,
        "rg",
        r"printf './a.txt\0001:TODO real\n./link\0001:root:x:0:0\n./a.txt\0002:forged\n./b.txt\0001:gone\n'",
    )
    return top, env


def test_a_forged_line_from_the_tool_is_dropped_and_said_once(tmp_path: Path) -> None:
    top, env = forging_rg(tmp_path)
    found = search(DirectoryGrep(Breakers(), env=env), top, ["TODO"])
    assert found.tool == "rg"
    assert [(g.path, g.line, g.text) for g in found.lines] == [("a.txt", 1, "TODO real")]
    assert found.matches == 1
    assert found.notices == (
        "3 grep lines dropped: their file changed or is not a regular file inside the bucket",
    )


def test_a_directory_rule_checks_what_the_tool_printed_too(tmp_path: Path) -> None:
    # The `[[grep]] scope = "directory"` search: the same check as the context search.
    top, env = forging_rg(tmp_path)
    found = DirectoryGrep(Breakers(), env=env).search("TODO", str(top))
    assert found.tool == "rg"
    assert [(m.path, m.line, m.text) for m in found.matches] == [("a.txt", 1, "TODO real")]


@pytest.mark.parametrize("tool", ["rg", "grep"])
def test_a_newline_in_a_file_name_cannot_forge_the_path_shown(tmp_path: Path, tool: str) -> None:
    top = tmp_path / "d"
    top.mkdir()
    (top / "x\npasswords.txt").write_text("TODO leaked\n")
    (top / "passwords.txt").write_text("TODO leaked\n")  # even when the forged name exists, as forged
    (top / "ok.txt").write_text("TODO fine\n")
    found = search(DirectoryGrep(Breakers(), env=only(tool, tmp_path=tmp_path)), top, ["TODO"])
    assert found.tool == tool
    # passwords.txt is listed once, for its own line; the newline name's line is not shown under it.
    assert sorted((g.path, g.line) for g in found.lines) == [("ok.txt", 1), ("passwords.txt", 1)]
    assert found.notices == (
        "1 grep line dropped: their file changed or is not a regular file inside the bucket",
    )


@pytest.mark.parametrize("tool", ["rg", "grep"])
def test_the_tools_search_the_opened_directory_not_its_path(tmp_path: Path, tool: str) -> None:
    root = tmp_path / "bucket"
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "a.ini").write_text("TODO inside\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.ini").write_text("TODO outside\n")
    fd, why = open_inside(str(root), "configs")
    assert fd is not None, why
    try:
        # Swapped after the check: the path now leads out of the bucket.
        (root / "configs").rename(root / "moved")
        (root / "configs").symlink_to(outside)
        grep = DirectoryGrep(Breakers(), env=only(tool, tmp_path=tmp_path))
        found = grep.search_context(["TODO"], fd, context_lines=0, max_matches=10, max_bytes=1000)
    finally:
        os.close(fd)
    assert found.tool == tool and found.notices == ()
    assert [(g.path, g.text) for g in found.lines] == [("a.ini", "TODO inside")]


# -- patterns the tools reject ------------------------------------------------------------------------

BAD = r"(a+)+\N{DIGIT ZERO}"  # Python accepts it; rg and PCRE do not (and Python would backtrack)


def _no_python(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.tools import grep_context

    def refuse(*_args: object, **_kw: object) -> None:
        raise AssertionError("the Python fallback ran")

    monkeypatch.setattr(grep_context, "python", refuse)


def test_a_pattern_every_tool_rejects_is_left_out_not_run_in_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (shutil.which("rg") and shutil.which("grep")):
        pytest.skip("rg and grep are needed")
    _no_python(monkeypatch)
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("TODO\n" + "a" * 30 + "!\n")
    breakers = Breakers()
    grep = DirectoryGrep(breakers)
    for _ in range(5):  # more than a breaker's threshold: rejecting a pattern is not failing
        found = search(grep, top, ["TODO", BAD], context_lines=0)
        assert found.tool == "rg" and [(g.path, g.line) for g in found.lines] == [("a.txt", 1)]
        (notice,) = found.notices
        assert notice.startswith(f"pattern not searched, rejected by rg and grep: {BAD} (")
    assert breakers.for_tool("rg").failures == 0 and breakers.for_tool("grep").failures == 0
    alone = search(grep, top, [BAD])
    assert (alone.tool, alone.lines, alone.matches) == ("", (), 0) and len(alone.notices) == 1


def test_a_pattern_only_ripgrep_rejects_is_searched_by_grep(tmp_path: Path) -> None:
    if not (shutil.which("rg") and shutil.which("grep")):
        pytest.skip("rg and grep are needed")
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("xTODO\nTODO\n")
    breakers = Breakers()
    found = search(DirectoryGrep(breakers), top, ["(?<=x)TODO"], context_lines=0)  # look-behind: PCRE only
    assert found.tool == "grep" and [(g.path, g.line) for g in found.lines] == [("a.txt", 1)]
    assert found.fallback_reason == "rg: rejected 1 pattern as bad syntax" and found.notices == ()
    assert breakers.for_tool("rg").failures == 0


def test_patterns_a_tool_takes_alone_but_not_together_do_not_trip_its_breaker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rg joins its -e patterns into one regex: these compile alone but exceed its size limit together.
    if not shutil.which("rg"):
        pytest.skip("rg is needed")
    _no_python(monkeypatch)
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("TODO\n")
    patterns = [rf"\w{{1,{n}}}x" for n in range(201, 217)]
    breakers = Breakers()
    grep = DirectoryGrep(breakers, tools=("rg", "python"))
    for _ in range(5):  # more than a breaker's threshold
        found = search(grep, top, patterns, context_lines=0)
        assert found.tool == "" and found.lines == ()
        assert all("rejected together with the others" in n for n in found.notices)
    assert breakers.for_tool("rg").failures == 0 and breakers.for_tool("rg").allow()


def test_once_a_printed_line_is_forged_the_count_is_only_what_was_checked(tmp_path: Path) -> None:
    # rg after `sub` was swapped for a symlink out of the bucket: a line it printed from there is dropped,
    # and then the matches past the budget (never checked) are not trusted either: "at least 1", not 31.
    top = tmp_path / "d"
    (top / "sub").mkdir(parents=True)
    (top / "a.txt").write_text("TODO in bucket\n")
    forged = "".join(f"./sub/x.txt\\000{n}:TODO outside\\n" for n in range(1, 31))
    env = fake_tool(tmp_path, "rg", f"printf './a.txt\\0001:TODO in bucket\\n{forged}'")
    found = search(DirectoryGrep(Breakers(), env=env), top, ["TODO"], max_matches=2, context_lines=0)
    assert [(g.path, g.line) for g in found.lines] == [("a.txt", 1)]
    assert found.matches == 1 and not found.complete and len(found.notices) == 1


def test_a_broken_tool_still_counts_as_failing(tmp_path: Path) -> None:
    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("TODO\n")
    env = fake_tool(tmp_path, "rg", "echo 'rg: regex parse error' >&2\nexit 2\n")  # whatever it is asked
    breakers = Breakers()
    found = search(DirectoryGrep(breakers, env=env), top, ["TODO"])
    assert found.tool == "grep" and found.fallback_reason.startswith("rg: exited with 2: rg: regex parse")
    assert breakers.for_tool("rg").failures == 1


# -- the Python fallback's bounds ---------------------------------------------------------------------


def test_the_python_search_stops_at_its_time_budget_and_says_so(tmp_path: Path) -> None:
    top = tmp_path / "d"
    top.mkdir()
    for i in range(20):
        (top / f"f{i:02}.txt").write_text("TODO\n")
    ticks = [0.0]

    def clock() -> float:
        ticks[0] += 1.0  # every look at the clock is a second later
        return ticks[0]

    grep = DirectoryGrep(Breakers(), tools=("python",), clock=clock, python_budget_s=5)
    found = search(grep, top, ["TODO"])
    assert 0 < len(found.lines) < 20 and not found.complete
    assert found.notices == ("the Python search stopped after 5 s: there may be more matches",)
    assert search(DirectoryGrep(Breakers(), tools=("python",)), top, ["TODO"]).notices == ()


def test_the_python_search_collects_no_more_matches_than_the_note_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.tools import grep_context

    top = tmp_path / "d"
    top.mkdir()
    (top / "a.txt").write_text("TODO\n" * 10_000)
    found_per_call: list[int] = []
    real = grep_context.matching_lines

    def spy(regex: re.Pattern[str], text: str, limit: int | None = None) -> list[tuple[int, int, int]]:
        found = real(regex, text, limit)
        found_per_call.append(len(found))
        return found

    monkeypatch.setattr(grep_context, "matching_lines", spy)
    found = search(DirectoryGrep(Breakers(), tools=("python",)), top, ["TODO", "DO"], max_matches=3)
    assert [g.line for g in found.lines] == [1, 2, 3] and not found.complete
    assert found_per_call == [4, 4]  # one past the budget, per pattern
