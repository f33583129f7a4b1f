"""One job, start to finish: open the input safely, learn its facts, let its skill describe it, gather its
`.bucket-include` context (when rules apply), render its note, write it atomically."""

from __future__ import annotations

import errno
import math
import os
from datetime import UTC, datetime
from pathlib import Path

from protocol.messages import ContextFacts, ContextRules, FileFacts, NoteSettings
from worker.pipeline.context import ContextCollector, NoteContext
from worker.pipeline.detect import describe
from worker.pipeline.errors import FileContentError, JobError, errno_name
from worker.pipeline.grep import GrepResult, GrepRules
from worker.pipeline.note import render_note, write_atomic
from worker.pipeline.safe_open import Version, open_regular
from worker.skills import Skill, SkillChooser, SkillInput, SkillLimits, SkillOutput
from worker.tools.dirgrep import DirectoryGrep

_DEFAULT_CHOOSER = SkillChooser()
_DEFAULT_LIMITS = SkillLimits()
_NO_GREP = GrepRules()
_DEFAULT_NOTES = NoteSettings()
#: Longest string a skill's finding keeps in the facts (the wire and the record bound it too).
_MAX_DETAIL_CHARS = 1024
#: Grep matches carried in the facts (the note lists the same ones); the protocol allows 2,000.
MAX_GREP_MATCHES = 500

# When the note cannot be written the disk said no (full, read-only, permissions, a missing directory):
# that clears up when an operator acts, so the coordinator retries with backoff. Only a name the output
# filesystem can never hold is final.
_FINAL_OUTPUT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL})


def process_file(
    path: str,
    output_path: str,
    *,
    bucket: str,
    relpath: str,
    worker: str,
    max_input_bytes: int,
    preview_lines: int,
    expect: Version | None = None,
    job_id: str | None = None,
    skills: SkillChooser = _DEFAULT_CHOOSER,
    limits: SkillLimits = _DEFAULT_LIMITS,
    grep: GrepRules = _NO_GREP,
    dirgrep: DirectoryGrep | None = None,
    notes: NoteSettings = _DEFAULT_NOTES,
    context: ContextRules | None = None,
    collector: ContextCollector | None = None,
) -> FileFacts:
    """Turn the file at `path` into a note at `output_path` and return what was learned about it.

    `notes` says what the note carries beside the facts; `context` is the file's `.bucket-include` rules
    (None: none apply, and nothing is walked or searched), gathered through the worker's `collector`,
    which reuses a burst's scans.

    Raises `JobError`: FileAccess / FileContent for the input (see `open_regular`, and a skill that refuses
    the file, such as an archive bomb), System when the note cannot be written.
    """
    fd, st = open_regular(path, max_input_bytes, expect)
    try:
        name = relpath or path
        described = describe(
            fd,
            st,
            preview_lines=preview_lines,
            name=name,
            keep=limits.max_content_bytes,
            content_bytes=notes.content_max_bytes,
        )
        skill, run = skills.choose(relpath or os.path.basename(path), described.facts)
        inp = SkillInput(
            name=os.path.basename(name),
            relpath=relpath,
            facts=described.facts,
            content=described.content,
            fd=fd,
            limits=limits,
            path=os.path.abspath(path),
        )
        found = _run_skill(skill, run, inp)
        root = _bucket_root(path, relpath)
        grepped = _grep(grep, inp, bucket, root, dirgrep)
    finally:
        os.close(fd)
    gathered = _context(context, root, relpath, notes, collector, dirgrep)
    recovery = grepped.recovery if grepped and grepped.recovery else None
    # Validated, not model_copy'd: a RESULT the coordinator would refuse at its boundary (a name or a list
    # past the protocol's bounds) must fail here, loudly, not leave the job hanging on a dropped frame.
    facts = FileFacts.model_validate(
        {
            **described.facts.__dict__,
            "skill": skill[:256],
            "details": _details(found),
            "grep_matches": grepped.matches[:MAX_GREP_MATCHES] if grepped else [],
            "recovery": recovery or (gathered.recovery if gathered else None),
            "context": gathered.facts if gathered else None,
        }
    )

    note = render_note(
        source_path=path,
        bucket=bucket,
        relpath=relpath,
        facts=facts,
        content=described.excerpt,
        processed_at=datetime.now(UTC),
        worker=worker,
        found=found,
        job_id=job_id,
        grep=grepped,
        context=gathered,
        show_content=notes.content_max_bytes > 0,
    )
    try:
        write_atomic(Path(output_path), note, owner=job_id)
    except OSError as exc:
        raise JobError(
            "System",
            f"cannot write note {output_path}: {exc.strerror or exc}",
            code=errno_name(exc),
            retryable=exc.errno not in _FINAL_OUTPUT_ERRNOS,
        ) from exc
    return facts


def _run_skill(skill: str, run: Skill, inp: SkillInput) -> SkillOutput:
    """Run a skill; anything but a JobError a built-in one raises is the file's doing (a skill bug shows
    up as a categorized FileContent error naming the skill, never as a crashed worker). Handler skills
    categorize their own failures (`worker.skills.handler`)."""
    try:
        return run(inp)
    except JobError:
        raise
    except RecursionError as exc:  # belt and braces: skills are written not to recurse on file data
        raise FileContentError(f"{skill} skill: the file is nested too deeply", code="EDEPTH") from exc
    except Exception as exc:
        raise FileContentError(f"{skill} skill failed on this file: {exc!r}"[:2000], code="ESKILL") from exc


def _details(found: SkillOutput) -> dict[str, str | int | float | bool | None]:
    out: dict[str, str | int | float | bool | None] = {}
    for key, value in list(found.fields.items())[:64]:
        if isinstance(value, str):
            value = value[:_MAX_DETAIL_CHARS]
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)  # NaN and infinities are not JSON: the record must stay readable
        out[key[:256]] = value
    return out


def _grep(
    rules: GrepRules, inp: SkillInput, bucket: str, root: str | None, dirgrep: DirectoryGrep | None
) -> GrepResult | None:
    """The grep rules' findings (file rules only search text held in memory); None without rules."""
    if not rules:
        return None
    return rules.scan(inp.text if inp.facts.is_text else None, bucket, root, dirgrep)


def _context(
    rules: ContextRules | None,
    root: str | None,
    relpath: str,
    notes: NoteSettings,
    collector: ContextCollector | None,
    dirgrep: DirectoryGrep | None,
) -> NoteContext | None:
    """The note's `.bucket-include` context; None (and no work at all) when no rules apply."""
    if rules is None:
        return None
    if root is None:  # the path does not end with its relpath: there is no bucket to walk
        facts = ContextFacts(problems=["the bucket's directory is not known: no context gathered"])
        return NoteContext(None, [], False, facts, settings=notes)
    collector = collector or ContextCollector(dirgrep)
    return collector.collect(root, relpath, rules, notes)


def _bucket_root(path: str, relpath: str) -> str | None:
    """The bucket's directory: the file's absolute path without its relative path."""
    full = os.path.abspath(path)
    suffix = "/" + relpath.lstrip("/")
    return full[: -len(suffix)] or "/" if relpath and full.endswith(suffix) else None
