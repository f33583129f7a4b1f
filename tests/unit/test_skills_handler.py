"""Handler skills: the user's function is imported in the worker, given the path and a context, and every
way it can fail ends as a categorized JobError."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from protocol.messages import FileFacts, SkillRule
from worker.pipeline.errors import JobError
from worker.pipeline.process import process_file
from worker.skills import SkillChooser, SkillInput
from worker.skills.handler import HandlerSkill

_names = itertools.count()

HANDLERS = """
from worker.skills.base import SkillOutput, Section
from worker.pipeline.errors import FileContentError

def fields(path, context):
    return {"path_ends": path.endswith(context.name), "chars": len(context.text or ""), "obj": [1, 2]}

def sections(path, context):
    return SkillOutput(fields={"n": 1}, sections=[Section("Found", ["- a\\x00b", "- c"])], tags=["mine"])

def boom(path, context):
    raise ValueError("cannot parse invoice")

def refuse(path, context):
    raise FileContentError("not an invoice", code="ENOTINV")

def wrong(path, context):
    return ["not", "a", "dict"]

def broken_output(path, context):
    return SkillOutput(fields={"a": 1}, sections=None)

def wild(path, context):
    return {"nan": float("nan"), "long": "x" * 5000, **{f"k{i}": i for i in range(100)}}

not_callable = 42
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"ob_test_handlers_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(HANDLERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def inp(text: str = "hello\n", name: str = "a.txt") -> SkillInput:
    data = text.encode()
    facts = FileFacts(size=len(data), sha256="0" * 64, file_type="text", mime="text/plain", is_text=True)
    return SkillInput(name=name, relpath=name, facts=facts, content=data, fd=-1, path=f"/bucket/{name}")


def test_a_dict_becomes_fields_and_other_values_their_repr(module: str) -> None:
    out = HandlerSkill(f"{module}:fields")(inp())
    assert out.fields == {"path_ends": True, "chars": 6, "obj": "[1, 2]"}


def test_a_skill_output_keeps_sections_made_safe(module: str) -> None:
    out = HandlerSkill(f"{module}:sections")(inp())
    assert out.fields == {"n": 1} and out.tags == ["mine"]
    assert [(s.title, s.lines) for s in out.sections] == [("Found", ["- a b", "- c"])]


@pytest.mark.parametrize(
    ("function", "category", "code"),
    [
        ("boom", "ExternalTool", "EHANDLER"),
        ("refuse", "FileContent", "ENOTINV"),
        ("wrong", "ExternalTool", "EHANDLER"),
        ("broken_output", "ExternalTool", "EHANDLER"),
        ("not_callable", "Configuration", "EIMPORT"),
        ("missing", "Configuration", "EIMPORT"),
    ],
)
def test_every_failure_is_a_categorized_job_error(
    module: str, function: str, category: str, code: str
) -> None:
    with pytest.raises(JobError) as info:
        HandlerSkill(f"{module}:{function}")(inp())
    assert (info.value.category, info.value.code) == (category, code)


def test_a_module_that_does_not_exist_is_a_configuration_error() -> None:
    with pytest.raises(JobError) as info:
        HandlerSkill("ob_no_such_module_anywhere:f")(inp())
    assert info.value.category == "Configuration" and "cannot be loaded" in str(info.value)


def test_a_rule_sends_matching_files_to_the_handler(module: str, tmp_path: Path) -> None:
    chooser = SkillChooser([SkillRule(pattern="*.inv", handler=f"{module}:fields")])
    source = tmp_path / "march.inv"
    source.write_text("total 12\n")
    facts = process_file(
        str(source), str(tmp_path / "out.md"), bucket="b", relpath="march.inv", worker="w",
        max_input_bytes=1 << 20, preview_lines=5, skills=chooser,
    )  # fmt: skip
    assert facts.skill == f"{module}:fields"
    assert facts.details == {"path_ends": True, "chars": 9, "obj": "[1, 2]"}
    note = (tmp_path / "out.md").read_text()
    assert f'skill: "{module}:fields"' in note and "| Chars | 9 |" in note


def test_what_a_handler_returns_is_bounded_before_it_reaches_the_wire(module: str, tmp_path: Path) -> None:
    chooser = SkillChooser([SkillRule(pattern="*", handler=f"{module}:wild")])
    source = tmp_path / "a.txt"
    source.write_text("x\n")
    facts = process_file(
        str(source), str(tmp_path / "n.md"), bucket="b", relpath="a.txt", worker="w",
        max_input_bytes=1 << 20, preview_lines=1, skills=chooser,
    )  # fmt: skip
    assert facts.details["nan"] == "nan" and len(str(facts.details["long"])) == 1024
    assert len(facts.details) == 64
