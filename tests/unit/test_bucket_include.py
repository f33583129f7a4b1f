"""`.bucket-include` rules: parsing, glob semantics, lookup order, merging, and bad lines that are
reported and skipped. Fixtures follow the original prototype's documented shapes; files are read from
an in-memory dict, as the worker reads them through its own safe opener."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from protocol.bucket_include import (
    DEFAULT_EXCLUDES,
    DirsSection,
    Problem,
    Rule,
    glob_match,
    load,
    merge,
    parse,
    rule_files,
)

BUCKET = "/b/inbox"
HOME = "/home/u"
XDG = "/tmp/xdg"

BUCKET_INCLUDE = """\
# Related context for the inbox bucket
src/**/*.js
*.md
docs/

!**/*.min.js
!docs/drafts/

[dirs:./configs]
TODO|FIXME|HACK
api_key\\s*=

[dirs:./templates]
TODO|FIXME|HACK
"""

JS_INCLUDE = """\
# JavaScript files also want their tests and package manifest
test/**/*.test.js
package.json
!src/vendor/

[dirs:./templates]
\\{\\{\\s*\\w+\\s*\\}\\}
"""

GLOBAL_INCLUDE = """\
README*
!secrets/

[dirs:./configs]
password
[dirs:./notes]
TODO
"""

GLOBAL_JS_INCLUDE = """\
*.ts
!*.spec.js
"""


def reader(files: dict[str, str]) -> Callable[[str], str | None]:
    """An in-memory `read`: None for a missing file, as the worker's safe opener returns."""
    return files.get


def full_layout() -> dict[str, str]:
    return {
        f"{BUCKET}/.bucket-include": BUCKET_INCLUDE,
        f"{BUCKET}/.js.bucket-include": JS_INCLUDE,
        f"{XDG}/open-buckets/.bucket-include": GLOBAL_INCLUDE,
        f"{XDG}/open-buckets/.js.bucket-include": GLOBAL_JS_INCLUDE,
    }


# ---------------------------------------------------------------------------------------------- parse


def test_parse_includes_excludes_and_dirs_sections() -> None:
    parsed = parse(BUCKET_INCLUDE, "B")
    assert parsed.problems == []
    assert parsed.includes == [Rule("src/**/*.js", "B", 2), Rule("*.md", "B", 3), Rule("docs/", "B", 4)]
    assert parsed.excludes == [Rule("**/*.min.js", "B", 6), Rule("docs/drafts/", "B", 7)]
    assert parsed.dirs == [
        DirsSection("configs", [Rule("TODO|FIXME|HACK", "B", 10), Rule(r"api_key\s*=", "B", 11)], "B", 9),
        DirsSection("templates", [Rule("TODO|FIXME|HACK", "B", 14)], "B", 13),
    ]


def test_comments_blank_lines_trailing_space_and_literal_hash_and_bang() -> None:
    parsed = parse("\ufeff# comment\n\n   \n*.txt   \r\n\\#weird.txt\n\\!bang.txt\n", "B")
    assert parsed.problems == []
    assert [r.pattern for r in parsed.includes] == ["*.txt", "\\#weird.txt", "\\!bang.txt"]
    assert parsed.excludes == []
    assert glob_match(parsed.includes[1].pattern, "a/#weird.txt")
    assert glob_match(parsed.includes[2].pattern, "!bang.txt")


def test_dirs_path_normalised_and_root_allowed() -> None:
    parsed = parse("[dirs:.]\nx\n[dirs:a/./b/../c/]\ny\n[dirs:  ./configs  ]\nz\n", "B")
    assert parsed.problems == []
    assert [d.path for d in parsed.dirs] == [".", "a/c", "configs"]


def test_character_class_line_is_a_glob_not_a_header() -> None:
    parsed = parse("[abc]*.txt\n", "B")
    assert parsed.problems == []
    assert parsed.includes == [Rule("[abc]*.txt", "B", 1)]


# ---------------------------------------------------------------------------------------------- bad lines


def test_each_bad_line_is_reported_and_the_rest_still_applies() -> None:
    text = "\n".join(
        [
            "*.md",  # 1 fine
            "src/[abc.js",  # 2 unbalanced [
            "!",  # 3 empty exclude
            "bad\\",  # 4 trailing backslash
            "[z-a].txt",  # 5 impossible range
            "[dirs:./configs]",  # 6 fine
            "TODO(",  # 7 bad regex
            "FIXME",  # 8 fine
            "[weird]",  # 9 unknown section
            "skipped",  # 10 under the unknown section: skipped with it
            "[dirs:./templates]",  # 11 fine again
            "HACK",  # 12
        ]
    )
    parsed = parse(text, "/b/.bucket-include")
    assert [(p.source, p.line, p.text) for p in parsed.problems] == [
        ("/b/.bucket-include", 2, "src/[abc.js"),
        ("/b/.bucket-include", 3, "!"),
        ("/b/.bucket-include", 4, "bad\\"),
        ("/b/.bucket-include", 5, "[z-a].txt"),
        ("/b/.bucket-include", 7, "TODO("),
        ("/b/.bucket-include", 9, "[weird]"),
    ]
    messages = [p.message for p in parsed.problems]
    assert "unbalanced" in messages[0] and messages[0].startswith("bad glob")
    assert "empty" in messages[1]
    assert "invalid regex" in messages[4]
    assert "unknown section" in messages[5]
    assert "/b/.bucket-include:2" in str(parsed.problems[0])
    # The good lines survive.
    assert [r.pattern for r in parsed.includes] == ["*.md"]
    assert parsed.excludes == []
    assert [(d.path, [r.pattern for r in d.patterns]) for d in parsed.dirs] == [
        ("configs", ["FIXME"]),
        ("templates", ["HACK"]),
    ]


@pytest.mark.parametrize(
    "header, why",
    [
        ("[dirs:../../etc]", "leaves the bucket"),
        ("[dirs:a/../../etc]", "leaves the bucket"),
        ("[dirs:..]", "leaves the bucket"),
        ("[dirs:/etc]", "absolute"),
        ("[dirs:]", "empty"),
        ("[dirs:   ]", "empty"),
        ("[dirs]", "needs a path"),
    ],
)
def test_dirs_outside_the_bucket_refused_with_its_lines(header: str, why: str) -> None:
    parsed = parse(f"*.md\n{header}\nroot:\n[dirs:./configs]\nTODO\n", "B")
    assert [(p.line, p.text) for p in parsed.problems] == [(2, header)]
    assert why in parsed.problems[0].message
    assert [d.path for d in parsed.dirs] == ["configs"]
    assert [r.pattern for r in parsed.dirs[0].patterns] == ["TODO"]
    assert [r.pattern for r in parsed.includes] == ["*.md"]


def test_parse_never_raises_on_garbage() -> None:
    parsed = parse("[\n]\n[[\n\\\n!!\n***\n[dirs:\x00]\n", "B")
    assert isinstance(parsed.problems, list)
    assert all(isinstance(p, Problem) for p in parsed.problems)


# ---------------------------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        # `*` stays within a segment
        ("src/*.js", "src/a.js", True),
        ("src/*.js", "src/lib/a.js", False),
        ("src/*", "src/a/b.js", False),
        # `**` crosses directories, zero or more segments
        ("src/**/*.js", "src/a.js", True),
        ("src/**/*.js", "src/a/b/c.js", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "a/xb", False),
        ("**/*.js", "a.js", True),
        ("**/*.js", "x/y/a.js", True),
        ("node_modules/**", "node_modules/x/index.js", True),
        ("node_modules/**", "node_modules", False),
        ("node_modules/**", "lib/node_modules/x.js", False),
        ("**", "any/thing", True),
        ("a//**/**/b", "a/x/b", True),
        ("a//**/**/b", "a/b", True),
        # `?` is one character, never "/"
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file12.txt", False),
        ("a?b", "a/b", False),
        # trailing "/" is a directory and everything below
        ("build/", "build/x/y.js", True),
        ("build/", "build", False),
        ("build/", "sub/build/x.js", True),
        ("docs/drafts/", "docs/drafts/a.md", True),
        ("docs/drafts/", "x/docs/drafts/a.md", False),
        # unanchored (no "/") matches at any depth, anchored ("/" inside or leading) only at the root
        ("*.log", "a/b/c.log", True),
        ("*.log", "c.log", True),
        ("*.log", "c.log.txt", False),
        ("README*", "docs/README.md", True),
        ("/README*", "docs/README.md", False),
        ("/README*", "README.md", True),
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "x/docs/a.md", False),
        # character classes
        ("[abc].txt", "b.txt", True),
        ("[abc].txt", "d.txt", False),
        ("[a-c]x", "bx", True),
        ("[!a-c]x", "dx", True),
        ("[!a-c]x", "ax", False),
        ("[^a-c]x", "dx", True),
        ("x[!a]y", "x/y", False),
        ("[]]", "]", True),
        # escapes and regex metacharacters are literal
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("a+b(1).txt", "a+b(1).txt", True),
        ("a.txt", "abtxt", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize("pattern", ["[abc", "a/[b", "", "/", "x\\", "[z-a]", "[a/b]"])
def test_invalid_globs_raise_value_error(pattern: str) -> None:
    with pytest.raises(ValueError):
        glob_match(pattern, "x")


# ---------------------------------------------------------------------------------------------- lookup


def test_rule_files_most_specific_first() -> None:
    assert rule_files(BUCKET, "src/App.JS", XDG, HOME) == [
        f"{BUCKET}/.js.bucket-include",
        f"{XDG}/open-buckets/.js.bucket-include",
        f"{BUCKET}/.bucket-include",
        f"{XDG}/open-buckets/.bucket-include",
    ]


@pytest.mark.parametrize("relpath", ["Makefile", "dir.d/Makefile", ".bashrc"])
def test_rule_files_without_extension(relpath: str) -> None:
    assert rule_files(BUCKET, relpath, XDG, HOME) == [
        f"{BUCKET}/.bucket-include",
        f"{XDG}/open-buckets/.bucket-include",
    ]


def test_rule_files_last_suffix_and_home_fallback() -> None:
    files = rule_files(BUCKET, "a.tar.gz", None, HOME)
    assert files[0] == f"{BUCKET}/.gz.bucket-include"
    assert files[1] == f"{HOME}/.config/open-buckets/.gz.bucket-include"
    # An empty or relative XDG_CONFIG_HOME is ignored (XDG spec).
    assert rule_files(BUCKET, "x", "", HOME)[-1] == f"{HOME}/.config/open-buckets/.bucket-include"
    assert rule_files(BUCKET, "x", "rel", HOME)[-1] == f"{HOME}/.config/open-buckets/.bucket-include"


# ---------------------------------------------------------------------------------------------- merge


def test_load_merges_most_specific_first() -> None:
    rules = load(BUCKET, "src/app.js", xdg_config_home=XDG, home=HOME, read=reader(full_layout()))
    bjs, gjs, b, g = (
        f"{BUCKET}/.js.bucket-include",
        f"{XDG}/open-buckets/.js.bucket-include",
        f"{BUCKET}/.bucket-include",
        f"{XDG}/open-buckets/.bucket-include",
    )
    assert [(r.pattern, r.source) for r in rules.includes] == [
        ("test/**/*.test.js", bjs),
        ("package.json", bjs),
        ("*.ts", gjs),
        ("src/**/*.js", b),
        ("*.md", b),
        ("docs/", b),
        ("README*", g),
    ]
    assert [(r.pattern, r.source) for r in rules.excludes] == [
        ("src/vendor/", bjs),
        ("*.spec.js", gjs),
        ("**/*.min.js", b),
        ("docs/drafts/", b),
        ("secrets/", g),
    ] + [(p, "default") for p in DEFAULT_EXCLUDES]
    # dirs merge by path: templates from the .js file wins whole over the bucket's; configs from the
    # bucket's file wins over the global one; notes only exists globally.
    by_path = {d.path: d for d in rules.dirs}
    assert list(by_path) == ["templates", "configs", "notes"]
    assert by_path["templates"].source == bjs
    assert [r.pattern for r in by_path["templates"].patterns] == [r"\{\{\s*\w+\s*\}\}"]
    assert by_path["configs"].source == b
    assert [r.pattern for r in by_path["configs"].patterns] == ["TODO|FIXME|HACK", r"api_key\s*="]
    assert [r.pattern for r in by_path["notes"].patterns] == ["TODO"]
    assert rules.problems == ()


def test_extension_files_only_apply_to_their_extension() -> None:
    rules = load(BUCKET, "notes/today.md", xdg_config_home=XDG, home=HOME, read=reader(full_layout()))
    assert {r.source for r in rules.includes} == {
        f"{BUCKET}/.bucket-include",
        f"{XDG}/open-buckets/.bucket-include",
    }
    assert {d.path: d.source for d in rules.dirs}["templates"] == f"{BUCKET}/.bucket-include"


def test_related_includes_minus_excludes() -> None:
    rules = load(BUCKET, "src/app.js", xdg_config_home=XDG, home=HOME, read=reader(full_layout()))
    assert rules.related("src/lib/util.js")
    assert rules.related("test/unit/a.test.js")
    assert rules.related("docs/guide/intro.txt")
    assert rules.related("README.md")
    assert not rules.related("src/lib/util.min.js")  # bucket exclude
    assert not rules.related("src/vendor/jquery.js")  # .js exclude
    assert not rules.related("docs/drafts/wip.md")  # directory exclude
    assert not rules.related("secrets/README.md")  # global exclude
    assert not rules.related("photo.png")  # no include


def test_default_excludes_always_apply() -> None:
    rules = merge([parse("**\n", "B")])
    assert rules.related("src/a.js")
    for path in ["node_modules/x/index.js", ".git/HEAD", "dist/app.js", "build/out/a.o", "a/b/debug.log"]:
        assert not rules.related(path), path
    for path in ["packages/a/node_modules/x.js", "sub/.git/HEAD", "web/dist/app.js", "x/build/a.o"]:
        assert not rules.related(path), path  # at any depth, not only the bucket root's
    assert rules.related("src/distance.js") and rules.related("builder/a.js")
    assert rules.excludes[-len(DEFAULT_EXCLUDES) :] == tuple(Rule(p, "default", 0) for p in DEFAULT_EXCLUDES)


def test_no_includes_means_nothing_related() -> None:
    rules = load(BUCKET, "a.js", xdg_config_home=XDG, home=HOME, read=reader({}))
    assert rules.includes == () and rules.dirs == () and rules.problems == ()
    assert not rules.related("a.js")
    assert rules.explain("a.js") == ["no include rules: nothing is related", "a.js: not related"]


def test_explain_names_each_rule_and_its_place() -> None:
    rules = load(BUCKET, "src/app.js", xdg_config_home=XDG, home=HOME, read=reader(full_layout()))
    lines = rules.explain("src/lib/util.min.js")
    assert lines == [
        f"included by src/**/*.js ({BUCKET}/.bucket-include:2)",
        f"excluded by !**/*.min.js ({BUCKET}/.bucket-include:6)",
        "src/lib/util.min.js: not related",
    ]
    assert rules.explain("build/x.log") == [
        "no include rule matches",
        "excluded by !**/build/** (default)",
        "excluded by !*.log (default)",
        "build/x.log: not related",
    ]
    assert rules.explain("photo.png") == ["no include rule matches", "photo.png: not related"]
    assert rules.explain("README.md")[-1] == "README.md: related"


def test_bad_lines_in_one_file_spoil_nothing_else() -> None:
    files = full_layout()
    files[f"{BUCKET}/.bucket-include"] = (
        "src/[oops\n*.md\n[dirs:../../etc]\nroot\n[dirs:./configs]\n(\nTODO\n"
    )
    rules = load(BUCKET, "src/app.js", xdg_config_home=XDG, home=HOME, read=reader(files))
    assert [(p.source, p.line) for p in rules.problems] == [
        (f"{BUCKET}/.bucket-include", 1),
        (f"{BUCKET}/.bucket-include", 3),
        (f"{BUCKET}/.bucket-include", 6),
    ]
    assert rules.related("notes/a.md")
    assert rules.related("test/x.test.js")
    assert {d.path: [r.pattern for r in d.patterns] for d in rules.dirs}["configs"] == ["TODO"]
    assert "etc" not in {d.path for d in rules.dirs} and "../../etc" not in {d.path for d in rules.dirs}


def test_unreadable_file_is_a_problem_not_a_crash() -> None:
    def read(path: str) -> str | None:
        if path.endswith("/.js.bucket-include"):
            raise PermissionError("denied")
        return {f"{BUCKET}/.bucket-include": "*.md\n"}.get(path)

    rules = load(BUCKET, "a.js", xdg_config_home=XDG, home=HOME, read=read)
    assert [(p.source, p.line) for p in rules.problems] == [
        (f"{BUCKET}/.js.bucket-include", 0),
        (f"{XDG}/open-buckets/.js.bucket-include", 0),
    ]
    assert rules.related("x.md")


def test_same_path_twice_in_one_file_joins() -> None:
    rules = merge(
        [parse("[dirs:configs]\nA\n[dirs:./configs/]\nB\n", "B"), parse("[dirs:configs]\nC\n", "G")]
    )
    assert [(d.path, [r.pattern for r in d.patterns]) for d in rules.dirs] == [("configs", ["A", "B"])]


def test_edited_text_takes_effect_on_next_load() -> None:
    files = {f"{BUCKET}/.bucket-include": "*.md\n"}
    assert not load(BUCKET, "a.txt", xdg_config_home=XDG, home=HOME, read=reader(files)).related("b.txt")
    files[f"{BUCKET}/.bucket-include"] = "*.txt\n"
    assert load(BUCKET, "a.txt", xdg_config_home=XDG, home=HOME, read=reader(files)).related("b.txt")


def test_a_range_spanning_slash_never_matches_it() -> None:
    assert glob_match("a[.-0]b", "a.b") and glob_match("a[.-0]b", "a0b")
    assert not glob_match("a[.-0]b", "a/b")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("*a*a*a*a*a*a*a*a*b", "a" * 255),  # a plain translation backtracks for minutes here
        ("*a*a*a*a*b", "a" * 200),
        ("**/a/**/a/**/a/**/a/**/b", "/".join(["a"] * 500)),
        ("x*a*a*a*/**/y*a*a*a*b", "/".join(["x" + "a" * 100] * 20)),
    ],
)
def test_hostile_globs_against_hostile_names_stay_fast(pattern: str, path: str) -> None:
    started = time.perf_counter()
    assert not glob_match(pattern, path)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*a*b", "xaab", True),
        ("*a*b", "xaba", False),
        ("a/**/b/**/c", "a/b/b/x/c", True),
        ("a/**/b/**/c", "a/bb/c", False),
        ("**/b/**/c", "bb/b/c", True),
        ("a/**/b/", "a/x/b/y", True),
        ("a/**/b/", "a/x/b", False),
    ],
)
def test_committed_pieces_still_match_exactly(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


def test_many_globs_join_in_one_regex() -> None:
    # Each translation names its groups afresh, so globs with stars can share one alternation.
    rules = merge([parse("*a*b*\n*a*b*\n**/x/**/y/**/z\n", "B")])
    assert rules.related("qaqbq") and rules.related("x/x/y/z") and not rules.related("qq")


def test_regexes_that_overflow_or_recurse_are_problems_not_crashes() -> None:
    deep = "(" * 2000 + "a" + ")" * 2000
    parsed = parse(f"[dirs:./d]\na{{99999999999}}\n{deep[:1000]}\nTODO\n", "B")
    assert [p.line for p in parsed.problems] == [2, 3]
    assert [r.pattern for r in parsed.dirs[0].patterns] == ["TODO"]


def test_over_long_lines_are_refused() -> None:
    parsed = parse("a" * 2000 + "\n*.md\n", "B")
    assert [r.pattern for r in parsed.includes] == ["*.md"]
    assert parsed.problems[0].line == 1 and "longer than" in parsed.problems[0].message


def test_an_escaped_backslash_before_a_trailing_slash_still_names_a_directory() -> None:
    assert glob_match("a\\\\/", "a\\/x")  # the glob a\\/ : a directory named a\ and what is below it
    assert not glob_match("a\\\\/", "a\\")
