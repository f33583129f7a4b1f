"""Command skills: an external program describes the file, `command = ["pdftotext", "{input}", "-"]`.

The program runs through `worker.tools.command.run_command`: its own process group, no shell (`{input}` is
the file's path, one argument whatever its name), `timeout_s`, `max_output_bytes` and a whole-group kill.
Each tool has a circuit breaker in the worker (`worker.tools.breaker`), and a rule may carry a
`rate_limit` ("60/min", `worker.tools.ratelimit`): jobs beyond it wait their turn, they do not fail.

The seed design's recovery states, as they apply here:

    primary   the command exits 0: its output becomes the note's "Output" section
    fallback  the tool is missing (said once per worker, not once per file) or its breaker is open: the
              built-in skill for the file's type describes it, and the record's details say why
    failure   non-zero exit: an ExternalTool ERROR with the exit code, the stderr tail and the duration
              (Timeout past `timeout_s`, ResourceLimit past the output cap or a sandbox limit, and
              SandboxViolation when the sandbox refused it: `worker.pipeline.limits`); the breaker
              counts it, and after `failure_threshold` in a row it opens, so the next files fall back
              until a probe after the cool-down succeeds
"""

from __future__ import annotations

import re
from collections.abc import Callable

from loguru import logger

from protocol.messages import SkillRule
from protocol.skills import parse_rate
from worker.pipeline.errors import JobError, JobErrorCategory
from worker.pipeline.limits import Counters, command_limit, command_refused
from worker.skills import md
from worker.skills.base import Section, Skill, SkillInput, SkillOutput
from worker.tools.breaker import Breakers
from worker.tools.command import CommandResult, ToolMissing, format_argv, run_command
from worker.tools.ratelimit import SlidingWindowLimiter

_BACKTICKS = re.compile("`+")
#: Lines of the command's output shown in the note.
MAX_OUTPUT_LINES = 50
#: Tools already reported missing by this worker: said once, not once per file.
_reported_missing: set[str] = set()

Fallback = Callable[[SkillInput], tuple[str, Skill]]


class CommandSkill:
    """One `[[skills]]` rule's command, with the tool's breaker and the rule's rate limiter."""

    def __init__(self, rule: SkillRule, breakers: Breakers, fallback: Fallback) -> None:
        assert rule.command  # the chooser builds one only for command rules
        self.template = list(rule.command)
        self.tool = self.template[0]
        self.timeout_s = rule.timeout_s
        self.max_output_bytes = rule.max_output_bytes
        self.breaker = breakers.for_tool(self.tool)
        self.limiter = SlidingWindowLimiter(*parse_rate(rule.rate_limit)) if rule.rate_limit else None
        self.fallback = fallback

    def __call__(self, inp: SkillInput) -> SkillOutput:
        if not self.breaker.allow():
            return self._fall_back(inp, f"{self.tool}'s circuit breaker is open after repeated failures")
        waited = self.limiter.acquire() if self.limiter else 0.0
        before = Counters.read()
        try:
            result = run_command(
                format_argv(self.template, input=inp.path),
                timeout_s=self.timeout_s,
                max_output_bytes=self.max_output_bytes,
            )
        except ToolMissing as exc:
            return self._missing(inp, exc)
        except Exception as exc:  # fork failed (EAGAIN), out of fds...: the breaker hears of it, always
            self.breaker.failure()
            message = f"{self.tool} could not be run: {exc!r}"[:2000]
            raise JobError("ExternalTool", message, code="ESPAWN", retryable=True) from exc
        if not result.ok:
            self.breaker.failure()
            raise _failure(self.tool, result, before)
        self.breaker.success()
        return _output(self.tool, result, waited)

    def _missing(self, inp: SkillInput, exc: ToolMissing) -> SkillOutput:
        self.breaker.success()  # not the tool failing: there is no tool; falling back is the answer
        if self.tool not in _reported_missing:
            _reported_missing.add(self.tool)
            logger.warning("{} is not available ({}); its files get the built-in skill", self.tool, exc)
        return self._fall_back(inp, f"{self.tool} is not installed or cannot run: {exc.strerror}")

    def _fall_back(self, inp: SkillInput, why: str) -> SkillOutput:
        name, skill = self.fallback(inp)
        out = skill(inp)
        out.fields = {"fallback": name, "fallback_reason": why, **out.fields}
        return out


def _output(tool: str, result: CommandResult, waited: float) -> SkillOutput:
    text = result.stdout.decode("utf-8", errors="replace")
    lines = text.splitlines()
    fields: dict[str, str | int | float | bool | None] = {
        "tool": tool,
        "exit_code": result.exit_code,
        "duration_s": round(result.duration_s, 3),
        "output_bytes": len(result.stdout),
    }
    if waited >= 0.001:  # acquire() takes a few µs even when nothing waits
        fields["rate_limit_wait_s"] = round(waited, 3)
    out = SkillOutput(fields=fields, tags=[f"tool/{tool.rsplit('/', 1)[-1]}"])
    if lines:
        shown = [md.inline(line, 500) for line in lines[:MAX_OUTPUT_LINES]]
        # The fence must outgrow every backtick run in the output, or a line of ``` would close it early.
        longest = max((len(run) for line in shown for run in _BACKTICKS.findall(line)), default=0)
        fence = "`" * max(3, longest + 1)
        block = [fence, *shown, fence]
        if len(lines) > MAX_OUTPUT_LINES:
            block.append(f"First {MAX_OUTPUT_LINES} of {len(lines):,} lines.")
        out.sections.append(Section("Output", block))
    return out


def _failure(tool: str, result: CommandResult, before: Counters) -> JobError:
    category: JobErrorCategory = "ExternalTool"
    limit = command_limit(result.signal, result.exit_code, result.stderr_tail, before)
    if limit is not None:
        category, why, code = limit
    elif result.timed_out:
        why, code = f"timed out after {result.duration_s:.1f}s", "ETIMEDOUT"
        category = "Timeout"
    elif result.truncated:
        why, code = f"wrote more than {len(result.stdout):,} bytes", "EOUTPUT"
        category = "ResourceLimit"
    elif result.exit_code is None:
        why, code = f"was killed by signal {result.signal}", f"SIG{result.signal}"
    else:
        why, code = f"exited with status {result.exit_code}", f"EXIT{result.exit_code}"
        if command_refused(result.stderr_tail):
            category = "SandboxViolation"
    tail = result.stderr_tail.strip()[-1500:]
    message = f"{tool} {why} after {result.duration_s:.2f}s" + (f"; stderr: {tail}" if tail else "")
    return JobError(category, message, code=code)
