"""The data skills (JSON, CSV) and the code skill: what they report, and that hostile input stays cheap."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from protocol.messages import FileFacts
from worker.pipeline.errors import FileContentError
from worker.skills.base import SkillInput, SkillLimits
from worker.skills.code import code_skill
from worker.skills.data import csv_skill, json_depth, json_skill

pytestmark = pytest.mark.timeout(30)


def make_input(
    name: str, data: str | bytes | None, file_type: str = "text", limits: SkillLimits | None = None
) -> SkillInput:
    """A text file as the pipeline hands it over; `data=None` stands for one too large to hold."""
    content = data.encode() if isinstance(data, str) else data
    facts = FileFacts(
        size=len(content) if content is not None else 9 * 1024**2,
        sha256="0" * 64,
        file_type=file_type,
        mime="text/plain",
        is_text=True,
        encoding="utf-8",
        line_count=1,
        word_count=1,
    )
    return SkillInput(
        name=name, relpath=name, facts=facts, content=content, fd=-1, limits=limits or SkillLimits()
    )


@contextmanager
def fast(seconds: float = 5.0) -> Iterator[None]:
    """A guard against catastrophic backtracking or recursion, not a benchmark."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s"


# --- JSON -------------------------------------------------------------------------------------------------


def test_json_object_lists_keys_with_their_types() -> None:
    out = json_skill(make_input("a.json", '{"name": "x", "tags": [1, 2], "meta": {"a": null}, "n": 1.5}'))
    assert out.fields == {"valid": True, "top_level": "object", "keys": 4, "depth": 2}
    assert out.sections[0].title == "Top-level keys"
    assert out.sections[0].lines == [
        "- `name`: string",
        "- `tags`: array",
        "- `meta`: object",
        "- `n`: number",
    ]
    assert out.tags == ["data/json"]


def test_json_object_keys_are_capped_and_made_safe() -> None:
    keys = {f"k{i}": i for i in range(60)} | {"a`b\nc": True}
    out = json_skill(make_input("a.json", json.dumps(keys)))
    lines = out.sections[0].lines
    assert len(lines) == 51 and lines[-1] == "- … and 11 more"
    assert out.fields["keys"] == 61
    limits = SkillLimits(max_list_items=100)
    tricky = json_skill(make_input("a.json", json.dumps(keys), limits=limits)).sections[0].lines[-1]
    assert tricky == "- ``a`b c``: boolean"


def test_json_array_counts_item_types() -> None:
    out = json_skill(make_input("a.json", '[1, 2.5, "s", null, true, false, {}, [], {"a": [1]}]'))
    assert out.fields == {"valid": True, "top_level": "array", "keys": 9, "depth": 3}
    assert out.sections[0].title == "Items"
    assert out.sections[0].lines[0] == "9 items"
    assert sorted(out.sections[0].lines[1:]) == [
        "- array: 1",
        "- boolean: 2",
        "- null: 1",
        "- number: 2",
        "- object: 2",
        "- string: 1",
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [('"hi"', "string"), ("42", "number"), ("-1.5e3", "number"), ("true", "boolean"), ("null", "null")],
)
def test_json_scalars(text: str, kind: str) -> None:
    out = json_skill(make_input("a.json", text))
    assert out.fields == {"valid": True, "top_level": kind, "keys": None, "depth": 0}
    assert out.sections == []


def test_invalid_json_is_reported_with_line_and_column() -> None:
    out = json_skill(make_input("a.json", '{\n  "a": 1,\n  "b": }\n'))
    assert out.fields == {"valid": False, "error": "Expecting value at line 3 column 8"}
    unterminated = json_skill(make_input("a.json", '["abc'))
    assert unterminated.fields["error"] == "Unterminated string starting at line 1 column 2"
    assert json_skill(make_input("a.json", "")).fields["valid"] is False
    assert json_skill(make_input("a.json", "1" * 5000)).fields["valid"] is False  # int digit limit


def test_deep_json_is_refused_before_parsing() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with fast(), pytest.raises(FileContentError) as caught:
        json_skill(make_input("deep.json", deep))
    assert caught.value.code == "EDEPTH"
    assert caught.value.category == "FileContent"
    assert str(caught.value) == "JSON nested 100,000 levels deep; the limit is 512"


def test_json_depth_limit_is_inclusive() -> None:
    at_limit = "[" * 512 + "]" * 512
    assert json_skill(make_input("a.json", at_limit)).fields["depth"] == 512
    with pytest.raises(FileContentError):
        json_skill(make_input("a.json", '{"a": ' + "[" * 512 + "]" * 512 + "}"))


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('["]"]', 1),  # a bracket inside a string
        (r'["\"]\""]', 1),  # escaped quotes do not end the string
        (r'"[\"]\"]"', 0),  # one string, all brackets inside it
        (r'["\\", [[]]]', 3),  # an escaped backslash does end the string
        ('{"a": {"b": "}}}}"}}', 2),
        ("[[]] [[[[]]]]", 4),  # invalid JSON: still never under what the parser would reach
        ('["unterminated [[[[', 1),
        ('"\\', 0),
        ("", 0),
    ],
)
def test_json_depth_ignores_brackets_in_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_scan_is_linear_on_hostile_text() -> None:
    with fast():
        assert json_depth("[]" * 1_000_000) == 1
        assert json_depth('"' + '\\"' * 1_000_000) == 0  # one unterminated string of escapes
        assert json_depth('"\\' * 1_000_000) == 0


# --- CSV --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "delimiter"),
    [
        ("a.csv", "name,age,city\nann,31,oslo\nbob,42,rome\n", "comma"),
        ("a.csv", "name;age;city\nann;31;oslo\nbob;42;rome\n", "semicolon"),
        ("a.tsv", "name\tage\tcity\nann\t31\toslo\nbob\t42\trome\n", "tab"),
        ("a.csv", "name|age|city\nann|31|oslo\nbob|42|rome\n", "pipe"),
    ],
)
def test_csv_delimiters(name: str, text: str, delimiter: str) -> None:
    out = csv_skill(make_input(name, text))
    assert out.fields == {"delimiter": delimiter, "columns": 3, "rows": 2, "header": True}
    assert out.sections[0].title == "Columns"
    assert out.sections[0].lines == ["- `name`", "- `age`", "- `city`"]
    assert out.tags == ["data/csv"]


def test_csv_without_header() -> None:
    out = csv_skill(make_input("a.csv", "1,2.5,3\n4,5.0,6\n7,8.25,9\n"))
    assert out.fields == {"delimiter": "comma", "columns": 3, "rows": 3, "header": False}
    assert out.sections == []


def test_csv_quoted_fields_with_delimiters_and_newlines() -> None:
    text = 'id;note\n1;"a; b\nsecond line"\n2;"say ""hi"""\n\n3;plain\n'
    out = csv_skill(make_input("a.csv", text))
    assert out.fields == {"delimiter": "semicolon", "columns": 2, "rows": 3, "header": True}


def test_csv_semicolons_win_over_commas_inside_values() -> None:
    text = "name;price\nwidget;1,50\ngadget;2,75\nthing;10,00\n"
    assert csv_skill(make_input("a.csv", text)).fields["delimiter"] == "semicolon"


def test_csv_nul_byte_and_huge_field_do_not_raise() -> None:
    with_nul = csv_skill(make_input("a.csv", "a,b\n1,\x002\n3,4\n"))
    assert with_nul.fields["rows"] == 2
    huge = csv_skill(make_input("a.csv", 'a,b\n1,"' + "x" * 200_000 + '"\n'))
    assert huge.fields["parsed"] is False
    assert "field larger than field limit" in str(huge.fields["error"])


def test_csv_row_count_stops_at_the_limit() -> None:
    text = "a,b\n" + "1,2\n" * 150
    out = csv_skill(make_input("a.csv", text, limits=SkillLimits(max_csv_rows=100)))
    assert out.fields["rows"] == 100
    assert str(out.fields["rows_note"]).startswith("at least")
    exact = csv_skill(make_input("a.csv", text, limits=SkillLimits(max_csv_rows=150)))
    assert exact.fields["rows"] == 150 and "rows_note" not in exact.fields


def test_csv_empty_and_single_column() -> None:
    assert csv_skill(make_input("a.csv", "")).fields == {
        "delimiter": "comma",
        "columns": 0,
        "rows": 0,
        "header": False,
    }
    assert csv_skill(make_input("a.tsv", "one\ntwo\n")).fields["delimiter"] == "tab"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (',"a' * 200_000, {"columns": 100_001, "rows": 1}),  # one line, longer than the sample
        ('\n"a' * 200_000, {"columns": 1, "rows": 100_000}),  # each quote spans two lines
        ('"' * 600_000, {"parsed": False}),  # one field over csv's field limit
    ],
)
def test_csv_hostile_quotes_are_fast(text: str, expected: dict[str, object]) -> None:
    # csv.Sniffer takes tens of seconds on the first two; the skill must not.
    with fast():
        out = csv_skill(make_input("a.csv", text))
    assert {key: out.fields[key] for key in expected} == expected


def test_data_skills_without_text_say_why() -> None:
    big = make_input("a.json", None)
    assert json_skill(big).fields == {"parsed": False, "reason": "larger than 8 MiB"}
    assert csv_skill(big).fields == {"parsed": False, "reason": "larger than 8 MiB"}


# --- code -------------------------------------------------------------------------------------------------

PYTHON = '''#!/usr/bin/env python3
"""Module."""

import os


# A comment.
class Shape(Base):
    def area(self):
        def helper():  # nested
            return 1

        return helper()

    async def load(self):
        pass


async def main() -> None:
    pass
def  spaced(): pass
text = "def not_a_definition"
'''


def test_python_definitions() -> None:
    out = code_skill(make_input("shapes.py", PYTHON, "python"))
    assert out.fields == {
        "language": "python",
        "definitions": 6,
        "classes": 1,
        "functions": 5,
        "comment_lines": 2,
        "blank_lines": 7,
    }
    assert out.sections[0].title == "Definitions"
    assert out.sections[0].lines == [
        f"- `{n}`" for n in ["Shape", "area", "helper", "load", "main", "spaced"]
    ]
    assert out.tags == ["code/python"]


def test_javascript_definitions() -> None:
    text = """// c
/* block
 * continued
 */
export default class Widget extends Base {
  render() {}
}
function plain(a, b) {}
export async function* stream() {}
const add = (a, b) => a + b;
const twice = async x => x * 2;
let legacy = function () {};
const notAFunction = 3;
"""
    out = code_skill(make_input("w.js", text, "javascript"))
    assert out.fields["language"] == "javascript"
    assert (out.fields["classes"], out.fields["functions"], out.fields["comment_lines"]) == (1, 5, 4)
    names = [line[3:-1] for line in out.sections[0].lines]
    assert names == ["Widget", "plain", "stream", "add", "twice", "legacy"]


def test_go_definitions() -> None:
    text = """package main

// Point is a point.
type Point struct {
\tX int
}

type Shape interface{}

func (p *Point) Move(dx int) {
\tf := func() {}
}

func main() {}
"""
    out = code_skill(make_input("main.go", text, "go"))
    assert out.fields == {
        "language": "go",
        "definitions": 4,
        "classes": 2,
        "functions": 2,
        "comment_lines": 1,
        "blank_lines": 4,
    }
    assert [line[3:-1] for line in out.sections[0].lines] == ["Point", "Shape", "Move", "main"]


def test_rust_definitions() -> None:
    text = """/// A point.
pub struct Point { x: i32 }
enum Kind { A }
pub(crate) trait Show {}
impl<T: Into<String>> Show for Wrapper<T> where T: Clone {
    pub async fn show(&self) {}
}
impl Point {
    const fn new() -> Self { Point { x: 0 } }
}
fn main() {}
pub unsafe extern "C" fn ffi() {}
"""
    out = code_skill(make_input("lib.rs", text, "rust"))
    assert (out.fields["definitions"], out.fields["classes"], out.fields["functions"]) == (9, 3, 4)
    names = [line[3:-1] for line in out.sections[0].lines]
    assert names == ["Point", "Kind", "Show", "Show for Wrapper<T>", "show", "Point", "new", "main", "ffi"]


def test_c_family_signatures_skip_statements() -> None:
    text = """#include <stdio.h>
struct point {
    int x;
};
struct point *make(int x);
static int *helper(const char *s, int n)
{
    if (n) {
        return 0;
    } else if (s) {
    }
    while (1) {
    }
}
int main(int argc, char **argv) {
    return 0;
}
"""
    out = code_skill(make_input("a.c", text, "c"))
    assert [line[3:-1] for line in out.sections[0].lines] == ["point", "helper", "main"]
    assert (out.fields["classes"], out.fields["functions"]) == (1, 2)


def test_java_classes_and_methods() -> None:
    text = """/**
 * Doc.
 */
public final class Greeter implements Runnable {
    public Greeter(String name) {
    }
    @Override
    public static <T> List<T> run(String[] args, Map<String, List<T>> m) throws IOException {
        for (int i = 0; i < n; i++) {
        }
        new Thread(() -> {
        });
    }
    record Pair(int a, int b) {}
}
"""
    out = code_skill(make_input("Greeter.java", text, "java"))
    assert [line[3:-1] for line in out.sections[0].lines] == ["Greeter", "Greeter", "run", "Pair"]
    assert (out.fields["classes"], out.fields["functions"], out.fields["comment_lines"]) == (2, 2, 3)


def test_shell_and_extension_only_languages() -> None:
    shell = code_skill(
        make_input("run.sh", "#!/bin/sh\nsetup() {\n  :\n}\nfunction teardown {\n}\n", "shell")
    )
    assert shell.fields == {
        "language": "shell",
        "definitions": 2,
        "functions": 2,
        "comment_lines": 1,
        "blank_lines": 0,
    }
    scala = code_skill(make_input("App.scala", "object App {\n  def main(): Unit = {}\n}\n"))
    assert scala.fields["language"] == "scala" and scala.fields["definitions"] == 2


def test_unknown_language_and_missing_text() -> None:
    unknown = code_skill(make_input("notes.txt", "def f(): pass\n"))
    assert unknown.fields == {"language": None}
    assert unknown.sections == [] and unknown.tags == []
    big = make_input("a.py", None, "python")
    assert code_skill(big).fields == {"language": "python", "parsed": False, "reason": "larger than 8 MiB"}


def test_definitions_list_is_capped_and_names_are_safe() -> None:
    text = "".join(f"def f{i}():\n    pass\n" for i in range(60))
    lines = code_skill(make_input("a.py", text, "python")).sections[0].lines
    assert len(lines) == 51 and lines[-1] == "- … and 10 more"
    odd = code_skill(make_input("a.rs", "impl Odd`Name {\n}\n", "rust"))  # not an identifier: md.code
    assert odd.sections[0].lines == ["- ``Odd`Name``"]


@pytest.mark.parametrize(
    "language, name",
    [
        ("python", "a.py"),
        ("javascript", "a.js"),
        ("typescript", "a.ts"),
        ("go", "a.go"),
        ("rust", "a.rs"),
        ("java", "A.java"),
        ("csharp", "A.cs"),
        ("kotlin", "a.kt"),
        ("swift", "a.swift"),
        ("c", "a.c"),
        ("cpp", "a.cpp"),
        ("ruby", "a.rb"),
        ("php", "a.php"),
        ("shell", "a.sh"),
        ("lua", "a.lua"),
    ],
)
def test_hostile_lines_do_not_backtrack(language: str, name: str) -> None:
    megabyte = 1_000_000
    for text in [
        "(" * megabyte,
        "a" * megabyte,
        "a " * (megabyte // 2),
        "int f(" + "(" * megabyte,
        "const a = (" + "b" * megabyte,
        "impl<" + "<" * megabyte,
        "\n".join(["class " + "a" * 50 + " " * 150 + "x("] * 5000),
        "\n".join(["a" + " " * 198 + "(" + ")" * 300] * 2000),
    ]:
        with fast():
            out = code_skill(make_input(name, text, language))
        assert out.fields["language"] == language
