"""Handler skills: the user's own Python, named in the config as "package.module:function".

The function is imported in the worker, on first use (never in the coordinator), and called as

    function(path: str, context: HandlerContext) -> Mapping[str, value] | SkillOutput | None

`path` is the file's absolute path; `context` carries what the pipeline already knows (facts, name,
relative path, the content and its decoded text when the file is small). A mapping becomes the note's
fields (values are kept if they are str, int, float, bool or None, shown with `repr` otherwise); a
`SkillOutput` may add sections and tags. It runs in the worker's process, under its limits: a handler that
crashes or hangs costs a worker, as any file would.

How a handler's failure is recorded: a `JobError` it raises keeps its category; an exception that a limit or
the sandbox caused is `ResourceLimit` or `SandboxViolation` (`worker.pipeline.limits`); any other exception
is `ExternalTool` (code EHANDLER) with the traceback; a handler that cannot be imported, or is not callable,
is `Configuration` (code EIMPORT) for every file it was meant for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from protocol.messages import FileFacts
from worker.pipeline.errors import JobError
from worker.pipeline.limits import Counters, limit_error
from worker.skills import md
from worker.skills.base import FieldValue, Section, SkillInput, SkillLimits, SkillOutput

#: At most this many fields, sections and lines per section are taken from a handler.
_MAX_FIELDS, _MAX_SECTIONS, _MAX_LINES = 64, 32, 500


@dataclass(frozen=True)
class HandlerContext:
    """What a handler is given besides the path."""

    name: str
    relpath: str
    facts: FileFacts
    content: bytes | None
    limits: SkillLimits
    _input: SkillInput

    @cached_property
    def text(self) -> str | None:
        """The content decoded with the detected encoding, or None for binary or large files."""
        return self._input.text


class HandlerSkill:
    """A handler, imported the first time a file needs it."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._function: Callable[..., Any] | None = None

    def __call__(self, inp: SkillInput) -> SkillOutput:
        function = self._load()
        context = HandlerContext(inp.name, inp.relpath, inp.facts, inp.content, inp.limits, inp)
        before = Counters.read()
        try:
            return _as_output(function(inp.path, context), self.spec)
        except JobError:
            raise
        except Exception as exc:  # raised by the handler, or a return value we could not take apart
            limit = limit_error(exc, before)
            if limit is not None:  # the sandbox or a limit stopped it: say which
                raise limit from exc
            # The ERROR's stack is the traceback of this chain, the handler's own frames included.
            message = f"handler {self.spec} raised {type(exc).__name__}: {exc}"[:2000]
            raise JobError("ExternalTool", message, code="EHANDLER") from exc

    def _load(self) -> Callable[..., Any]:
        if self._function is None:
            module_name, _, attribute = self.spec.partition(":")
            try:
                function = getattr(importlib.import_module(module_name), attribute)
            except Exception as exc:  # ImportError, AttributeError, or the module failing as it loads
                raise JobError(
                    "Configuration", f"handler {self.spec} cannot be loaded: {exc!r}"[:2000], code="EIMPORT"
                ) from exc
            if not callable(function):
                raise JobError("Configuration", f"handler {self.spec} is not callable", code="EIMPORT")
            self._function = function
        return self._function


def _as_output(result: object, spec: str) -> SkillOutput:
    if result is None:
        return SkillOutput()
    if isinstance(result, SkillOutput):
        sections = [
            Section(md.inline(s.title), [md.inline(line, 2000) for line in s.lines[:_MAX_LINES]])
            for s in result.sections[:_MAX_SECTIONS]
        ]
        return SkillOutput(_fields(result.fields), sections, [str(t) for t in result.tags[:20]])
    if isinstance(result, Mapping):
        return SkillOutput(_fields(result))
    raise JobError(
        "ExternalTool", f"handler {spec} returned {type(result).__name__}, not a dict", code="EHANDLER"
    )


def _fields(values: Mapping[Any, Any]) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    for key, value in list(values.items())[:_MAX_FIELDS]:
        if not isinstance(value, str | int | float | bool) and value is not None:
            value = repr(value)
        out[str(key)[:64]] = value
    return out
