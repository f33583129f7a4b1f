"""A note's `.bucket-include` context: related files (includes minus excludes, pruned directories, no
symlinks, not the file itself, bounded), `[dirs:PATH]` grep sections (checked paths, budgets), the burst
cache (one scan for a thousand files, a new one for new rules or after expiry), and what reaches the
facts and the note."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol.messages import ContextRules, DirsRule, FileFacts, NoteSettings
from worker.pipeline.context import ContextCollector, open_inside
from worker.pipeline.process import process_file
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep

NOTES = NoteSettings()


def make(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    return make(
        tmp_path / "bucket",
        {
            "drop.md": "the dropped file\n",
            "a.md": "aa\n",
            "docs/b.md": "bbbb\n",
            "docs/c.txt": "not included\n",
            "docs/min/d.min.md": "excluded by a glob\n",
            ".notes/e.md": "a dot-directory is walked unless excluded\n",
            "node_modules/pkg/f.md": "pruned\n",
        },
    )


def rules(key: str = "k", **kw: object) -> ContextRules:
    args: dict[str, object] = {"key": key, "includes": ["*.md"], "excludes": ["*.min.md", "node_modules/**"]}
    args.update(kw)
    return ContextRules.model_validate(args)


def collector(**kw: object) -> ContextCollector:
    return ContextCollector(DirectoryGrep(Breakers(), tools=("python",)), **kw)  # type: ignore[arg-type]


# -- related context ----------------------------------------------------------------------------------


def test_related_files_are_the_includes_minus_the_excludes_without_the_file_itself(bucket: Path) -> None:
    got = collector().collect(str(bucket), "drop.md", rules(), NOTES)
    assert got.related is not None
    assert [p for p, _ in got.related.listed] == [".notes/e.md", "a.md", "docs/b.md"]
    assert (got.related.count, got.related.total_bytes) == (3, len("aa\n") + len("bbbb\n") + 42)
    assert (got.facts.related_files, got.facts.related_bytes) == (3, got.related.total_bytes)
    assert got.facts.scanned and got.facts.problems == []


def test_excluded_directories_are_pruned_not_walked(bucket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.tools import fswalk

    opened: list[str] = []
    real = fswalk.open_dir

    def spy(name: str, dir_fd: int | None = None) -> int:
        opened.append(name)
        return real(name, dir_fd)

    monkeypatch.setattr(fswalk, "open_dir", spy)
    got = collector().collect(str(bucket), "drop.md", rules(excludes=["node_modules/**", ".notes/"]), NOTES)
    assert "node_modules" not in opened and ".notes" not in opened and "docs" in opened
    assert got.related is not None and [p for p, _ in got.related.listed] == [
        "a.md",
        "docs/b.md",
        "docs/min/d.min.md",
    ]


def test_symlinks_are_neither_listed_nor_entered(bucket: Path, tmp_path: Path) -> None:
    outside = make(tmp_path / "outside", {"secret.md": "outside the bucket\n"})
    (bucket / "link-dir").symlink_to(outside)
    (bucket / "link.md").symlink_to(outside / "secret.md")
    (bucket / "docs" / "loop").symlink_to(bucket)
    got = collector().collect(str(bucket), "drop.md", rules(), NOTES)
    assert got.related is not None
    assert [p for p, _ in got.related.listed] == [".notes/e.md", "a.md", "docs/b.md"]


def test_the_first_n_are_listed_and_the_rest_counted(tmp_path: Path) -> None:
    root = make(tmp_path / "b", {f"n{i:02}.md": "x" for i in range(30)})
    got = collector().collect(str(root), "n05.md", rules(), NoteSettings(related_listed=3))
    assert got.related is not None and got.related.count == 29
    assert [p for p, _ in got.related.listed] == ["n00.md", "n01.md", "n02.md"]
    note = _render(got)
    assert "29 files, 29 bytes, match the `.bucket-include` rules:" in note
    assert "- `n02.md` (1 byte)\n- … and 26 more" in note


def test_no_include_rules_means_no_walk_and_no_section(bucket: Path) -> None:
    got = collector().collect(str(bucket), "drop.md", rules(includes=[]), NOTES)
    assert got.related is None and not got.facts.scanned and got.facts.related_files == 0


def test_the_walk_is_bounded_and_says_so(tmp_path: Path) -> None:
    root = make(tmp_path / "b", {f"d{i}/f{j}.md": "x" for i in range(10) for j in range(10)})
    got = collector(max_entries=50).collect(str(root), "none.md", rules(), NOTES)
    assert got.related is not None and got.related.count < 50
    assert got.related.bound == "stopped after 50 entries"
    assert got.facts.problems == ["related context: the walk stopped after 50 entries"]
    assert "*The walk stopped after 50 entries: there may be more.*" in _render(got)

    deep = make(tmp_path / "deep", {"a/b/c/d.md": "x", "top.md": "y"})
    shallow = collector(max_depth=2).collect(str(deep), "x", rules(), NOTES)
    assert shallow.related is not None and [p for p, _ in shallow.related.listed] == ["top.md"]
    assert shallow.related.bound == "not entered below depth 2"


# -- grep sections ------------------------------------------------------------------------------------

CONFIGS = {
    "configs/app.ini": "[server]\nport = 80\n; TODO: tls\nhost = example\n\n"
    "workers = 4\n\nretries = 3\n# FIXME\n",
    "configs/sub/db.ini": "user = app\nTODO\n",
    "configs/.hidden.ini": "TODO hidden\n",
    "elsewhere.ini": "TODO not searched\n",
}


def dirs(*paths: str, patterns: tuple[str, ...] = ("TODO", "FIXME")) -> ContextRules:
    return ContextRules(key="g", dirs=[DirsRule(path=p, patterns=list(patterns)) for p in paths])


def _only(tool: str) -> DirectoryGrep:
    return DirectoryGrep(Breakers(), tools=(tool, "python") if tool != "python" else ("python",))


@pytest.mark.parametrize("tool", ["rg", "grep", "python"])
def test_each_tool_gives_grouped_matches_with_two_lines_of_context(tmp_path: Path, tool: str) -> None:
    root = make(tmp_path / "b", CONFIGS)
    got = ContextCollector(_only(tool)).collect(str(root), "x.md", dirs("configs"), NOTES)
    (section,) = got.greps
    assert (section.tool, section.fallback_reason, section.matches, section.complete) == (tool, "", 3, True)
    assert [(line.path, line.line, line.match) for line in section.lines] == [
        ("configs/app.ini", 1, False),
        ("configs/app.ini", 2, False),
        ("configs/app.ini", 3, True),
        ("configs/app.ini", 4, False),
        ("configs/app.ini", 5, False),
        ("configs/app.ini", 7, False),
        ("configs/app.ini", 8, False),
        ("configs/app.ini", 9, True),
        ("configs/sub/db.ini", 1, False),
        ("configs/sub/db.ini", 2, True),
    ]
    assert (got.facts.grep_dirs, got.facts.grep_matches, got.facts.grep_tool) == (1, 3, tool)
    note = _render(got)
    assert "### `configs/`\n\nPatterns: `TODO`, `FIXME`\n\n3 matches in 2 files" in note
    assert "`configs/app.ini`: 2 matches\n\n```\n1- [server]\n2- port = 80\n3: ; TODO: tls\n" in note
    assert "5-\n--\n7-\n8- retries = 3\n9: # FIXME\n```" in note


def test_a_failing_ripgrep_falls_back_to_grep_and_the_record_says_why(tmp_path: Path) -> None:
    root = make(tmp_path / "b", CONFIGS)
    fake = make(tmp_path / "bin", {"rg": "#!/bin/sh\necho 'rg: boom' >&2\nexit 2\n"})
    os.chmod(fake / "rg", 0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    grep = DirectoryGrep(Breakers(), env=env)
    got = ContextCollector(grep).collect(str(root), "x.md", dirs("configs"), NOTES)
    (section,) = got.greps
    assert section.tool == "grep" and section.matches == 3
    assert section.fallback_reason.startswith("rg: exited with 2: rg: boom")
    assert got.recovery is not None and got.recovery.fallback == "grep"


def test_a_symlinked_dirs_path_is_not_searched(tmp_path: Path) -> None:
    root = make(tmp_path / "b", CONFIGS)
    outside = make(tmp_path / "outside", {"secret.txt": "TODO secret\n"})
    (root / "link").symlink_to(outside)
    (root / "configs" / "inner").symlink_to(outside)
    for tool in ("rg", "grep", "python"):
        got = ContextCollector(_only(tool)).collect(str(root), "x", dirs("link", "configs/inner"), NOTES)
        assert [s.problem for s in got.greps] == ["link is a symlink", "configs/inner is a symlink"]
        assert got.facts.grep_dirs == 0 and got.facts.problems == [
            "[dirs:link] not searched: link is a symlink",
            "[dirs:configs/inner] not searched: configs/inner is a symlink",
        ]
        assert "Not searched: link is a symlink." in _render(got)
        # A symlink inside a searched directory is not followed either.
        whole = ContextCollector(_only(tool)).collect(str(root), "x", dirs("."), NOTES)
        assert "secret" not in str(whole.greps), tool


def test_dirs_paths_that_leave_the_bucket_or_are_missing_are_refused(tmp_path: Path) -> None:
    root = make(tmp_path / "b", CONFIGS)
    make(tmp_path, {"sibling/x.txt": "TODO\n"})
    assert open_inside(str(root), "../sibling") == (None, "it leaves the bucket")
    assert open_inside(str(root), "configs/../../sibling") == (None, "it leaves the bucket")
    assert open_inside(str(root), "/etc") == (None, "it is not relative to the bucket")
    assert open_inside(str(root), "nope/x") == (None, "nope does not exist")
    assert open_inside(str(root), "elsewhere.ini") == (None, "elsewhere.ini is not a directory")
    got = collector().collect(str(root), "x", dirs("../sibling"), NOTES)
    assert got.greps[0].problem == "it leaves the bucket" and got.facts.grep_matches == 0


@pytest.mark.parametrize("tool", ["rg", "grep", "python"])
def test_grep_results_are_bounded_per_note_and_say_so(tmp_path: Path, tool: str) -> None:
    root = make(tmp_path / "b", {"logs/a.txt": "".join(f"hit {i}\nquiet\n" for i in range(500))})
    notes = NoteSettings(grep_max_matches=10, grep_context_lines=1)
    got = ContextCollector(_only(tool)).collect(str(root), "x", dirs("logs", patterns=("hit",)), notes)
    (section,) = got.greps
    assert sum(line.match for line in section.lines) == 10
    # The last match keeps its after-context; the before-context of the first match cut is not kept.
    assert [(line.line, line.match) for line in section.lines[-3:]] == [(18, False), (19, True), (20, False)]
    assert got.facts.grep_matches == section.matches >= 10
    assert "*Cut: a note shows at most 10 matches" in _render(got)
    by_bytes = ContextCollector(_only(tool)).collect(
        str(root), "x", dirs("logs", patterns=("hit",)), NoteSettings(grep_max_bytes=100)
    )
    assert 0 < sum(len(line.text) + 8 for line in by_bytes.greps[0].lines) <= 100


def test_the_budget_is_shared_by_the_sections_of_a_note(tmp_path: Path) -> None:
    root = make(tmp_path / "b", {"one/a.txt": "hit\n" * 8, "two/b.txt": "hit\n" * 8})
    notes = NoteSettings(grep_max_matches=10, grep_context_lines=0)
    got = collector().collect(str(root), "x", dirs("one", "two", patterns=("hit",)), notes)
    assert [sum(line.match for line in s.lines) for s in got.greps] == [8, 2]
    assert got.grep_cut and got.facts.grep_matches == 16


def test_grep_text_cannot_inject_markdown(tmp_path: Path) -> None:
    root = make(tmp_path / "b", {"d/evil.md": "x\n`````\n# TODO heading\r## injected\n"})
    note = _render(collector().collect(str(root), "x", dirs("d", patterns=("TODO",)), NOTES))
    assert "\n# TODO" not in note and "\n## injected" not in note
    assert "``````\n1- x\n2- `````\n3: # TODO heading ## injected\n``````" in note


# -- the burst cache ----------------------------------------------------------------------------------


def test_a_burst_of_a_thousand_files_scans_once(bucket: Path) -> None:
    now = [0.0]
    shared = collector(clock=lambda: now[0])
    both = rules(dirs=[DirsRule(path="docs", patterns=["bbbb"])])
    scanned = 0
    for i in range(1000):
        got = shared.collect(str(bucket), f"drop{i}.md", both, NOTES)
        scanned += got.facts.scanned
        now[0] += 0.001
    assert scanned == 1
    assert got.related is not None and got.related.count == 4 and got.facts.grep_matches == 1


def test_new_rules_scan_again_and_the_cache_expires(bucket: Path) -> None:
    now = [100.0]
    shared = collector(clock=lambda: now[0])
    assert shared.collect(str(bucket), "drop.md", rules("k1"), NOTES).facts.scanned
    assert not shared.collect(str(bucket), "drop.md", rules("k1"), NOTES).facts.scanned
    assert shared.collect(str(bucket), "drop.md", rules("k2"), NOTES).facts.scanned  # a new rule set
    (bucket / "new.md").write_text("landed during the burst\n")
    now[0] += 9.9
    cached = shared.collect(str(bucket), "drop.md", rules("k1"), NOTES)
    assert not cached.facts.scanned and cached.related is not None and cached.related.count == 3
    now[0] += 0.2
    fresh = shared.collect(str(bucket), "drop.md", rules("k1"), NOTES)
    assert fresh.facts.scanned and fresh.related is not None and fresh.related.count == 4
    # New note settings (a new CONFIG) start over; a zero window caches nothing.
    assert shared.collect(str(bucket), "drop.md", rules("k1"), NoteSettings(related_listed=1)).facts.scanned
    off = NoteSettings(context_cache_s=0)
    assert all(shared.collect(str(bucket), "drop.md", rules("k1"), off).facts.scanned for _ in range(3))


# -- through the pipeline -----------------------------------------------------------------------------


def _process(bucket: Path, tmp_path: Path, **kw: object) -> tuple[FileFacts, str]:
    out = tmp_path / "notes" / "drop.md.obs.md"
    facts = process_file(
        str(bucket / "drop.md"), str(out), bucket="inbox", relpath="drop.md", worker="w",
        max_input_bytes=1 << 20, preview_lines=0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return facts, out.read_text()


def test_without_rules_there_is_no_context_and_nothing_is_walked(
    bucket: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline import context

    monkeypatch.setattr(context, "walk_files", None)  # would raise if anything walked
    facts, note = _process(bucket, tmp_path)
    assert facts.context is None
    assert "## Related Context" not in note and "## Grep Results" not in note
    assert note.endswith("## Content\n\n```markdown\nthe dropped file\n```\n")


def test_context_reaches_the_facts_and_the_note(bucket: Path, tmp_path: Path) -> None:
    facts, note = _process(
        bucket,
        tmp_path,
        context=rules(dirs=[DirsRule(path="docs", patterns=["b{4}"])]),
        collector=collector(),
    )
    assert facts.context is not None
    assert facts.context.model_dump() == {
        "related_files": 3,
        "related_bytes": 50,
        "grep_dirs": 1,
        "grep_matches": 1,
        "grep_tool": "python",
        "scanned": True,
        "problems": [],
    }
    related = note.index("## Related Context")
    assert related < note.index("## Grep Results") < note.index("## Content")
    assert "- `a.md` (3 bytes)" in note and "`drop.md` (" not in note


def _render(got: object) -> str:
    from worker.pipeline.context import NoteContext
    from worker.pipeline.note_sections import grep_section, related_section

    assert isinstance(got, NoteContext)
    lines = related_section(got.related) if got.related else []
    lines += grep_section(got) if got.greps else []
    return "\n".join(lines) + "\n"


def test_a_bucket_root_that_is_itself_a_symlink_is_walked(bucket: Path, tmp_path: Path) -> None:
    (tmp_path / "via-link").symlink_to(bucket)  # the operator's choice, not a file's
    got = collector().collect(
        str(tmp_path / "via-link"), "drop.md", rules(dirs=[DirsRule(path="docs", patterns=["b"])]), NOTES
    )
    assert got.related is not None and got.related.count == 3 and got.facts.problems == []


def test_non_utf8_names_reach_the_note_and_the_facts_safely(tmp_path: Path) -> None:
    root = make(tmp_path / "b", {"drop.md": "x\n", "d/ok.md": "TODO\n"})
    (root / os.fsdecode(b"caf\xe9.md")).write_text("TODO\n")
    (root / os.fsdecode(b"bad\xff")).symlink_to(root / "d")
    got = collector().collect(
        str(root), "drop.md", rules(dirs=[DirsRule(path=".", patterns=["TODO"])]), NOTES
    )
    assert got.related is not None and got.related.count == 2
    note = _render(got)
    note.encode("utf-8")  # no lone surrogates left to write
    assert "`caf\ufffd.md` (5 bytes)" in note
    from worker.pipeline.context import _wire_safe

    assert _wire_safe(os.fsdecode(b"bad\xff")) == "bad\\udcff"


@pytest.mark.parametrize("tool", ["rg", "python"])
def test_no_descriptor_is_left_open(tmp_path: Path, tool: str) -> None:
    root = make(tmp_path / "b", {f"d{i}/s/f.txt": "hit\n" * 50 for i in range(5)})
    (root / "link").symlink_to(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    notes = NoteSettings(grep_max_matches=3, context_cache_s=0)
    for paths in (("d0", "link", "nope"), (".",)):
        got = ContextCollector(_only(tool)).collect(
            str(root), "x", rules(dirs=[DirsRule(path=p, patterns=["hit"]) for p in paths]), notes
        )
        assert got.facts.scanned
    assert len(os.listdir("/proc/self/fd")) == before


# -- hostile rules and trees --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["[click me](javascript:alert(1))", "<img src=x onerror=alert(1)>", "![[Other note]]"]
)
def test_a_dirs_path_cannot_inject_markdown_into_the_note(tmp_path: Path, path: str) -> None:
    root = make(tmp_path / "b", {"x.md": "x\n"})
    got = collector().collect(str(root), "x.md", dirs(path), NOTES)
    assert got.greps[0].problem == f"{path} does not exist"
    note = _render(got)
    heading, sentence = (line for line in note.split("\n") if line.startswith(("###", "Not")))
    assert heading == f"### `{path}/`"  # a code span: inert
    bare = sentence.removeprefix("Not searched: ")
    assert not set(_unescaped(bare)) & set("[]()<>!"), sentence


def _unescaped(text: str) -> str:
    """`text` without its backslash-escaped characters: what markdown could still act on."""
    import re

    return re.sub(r"\\.", "", text)


def test_a_rejected_pattern_is_said_in_the_facts_and_the_note(tmp_path: Path) -> None:
    import shutil

    if not (shutil.which("rg") and shutil.which("grep")):
        pytest.skip("rg and grep are needed")
    root = make(tmp_path / "b", {"d/a.txt": "TODO\n"})
    bad = r"(a+)+\N{DIGIT ZERO}"
    shared = ContextCollector(DirectoryGrep(Breakers()))
    some = shared.collect(str(root), "x", dirs("d", patterns=("TODO", bad)), NOTES)
    assert some.facts.grep_matches == 1 and some.facts.grep_tool == "rg"
    (problem,) = some.facts.problems
    assert problem.startswith(f"[dirs:d] pattern not searched, rejected by rg and grep: {bad} (")
    shown = "*pattern not searched, rejected by rg and grep: \\(a+\\)+\\\\N{DIGIT ZERO} \\(error: "
    assert shown in _render(some)
    only_bad = ContextRules(key="other", dirs=[DirsRule(path="d", patterns=[bad])])  # the key names the rules
    none = shared.collect(str(root), "x", only_bad, NOTES)
    assert none.greps[0].problem == "no pattern that rg or grep accepts" and none.facts.grep_dirs == 0
    assert none.facts.problems[0] == "[dirs:d] not searched: no pattern that rg or grep accepts"
    assert "Not searched: no pattern that rg or grep accepts." in _render(none)


def test_the_cache_is_bounded_by_the_entries_it_holds(tmp_path: Path) -> None:
    buckets = [make(tmp_path / f"b{i}", {f"f{j}.md": "x" for j in range(40)}) for i in range(5)]
    now = [0.0]
    shared = collector(clock=lambda: now[0], max_cached_entries=100)
    for root in buckets:
        assert shared.collect(str(root), "none", rules(), NOTES).facts.scanned
    assert shared._cached_entries <= 100 and len(shared._cache) == 2  # 40 entries each: the last two
    assert not shared.collect(str(buckets[-1]), "none", rules(), NOTES).facts.scanned
    assert shared.collect(str(buckets[0]), "none", rules(), NOTES).facts.scanned  # evicted, the oldest
    # A part bigger than the whole cap is not kept at all.
    big = make(tmp_path / "big", {f"f{j}.md": "x" for j in range(150)})
    assert shared.collect(str(big), "none", rules(), NOTES).facts.scanned
    assert shared.collect(str(big), "none", rules(), NOTES).facts.scanned
    assert shared._cached_entries == sum(len(part.files) for _, part in shared._cache.values())  # type: ignore[union-attr]
