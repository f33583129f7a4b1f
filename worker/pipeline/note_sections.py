"""The note's sections that show what the file and its bucket hold: Content, Related Context and Grep
Results.

Everything in them came from files, so it goes through a fence that outgrows every backtick run inside it
(a file's text, grep lines) or through `worker.skills.md` (paths, patterns): nothing a file holds can close
a block early or add markdown of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from protocol.messages import FileFacts
from worker.pipeline import filetypes
from worker.pipeline.context import GrepSection, NoteContext, RelatedView
from worker.pipeline.excerpt import Excerpt
from worker.skills import md
from worker.tools.grep_context import GrepLine

_BACKTICKS = re.compile("`+")
#: A grep line's text in the note: one line, no control characters (the fence keeps it inert).
_GREP_LINE_CHARS = 1000


def human_size(size: int) -> str:
    """ "52 bytes", "2.0 KiB (2,048 bytes)"."""
    if size < 1024:
        return f"{size} bytes" if size != 1 else "1 byte"
    return f"{short_size(size)} ({size:,} bytes)"


def short_size(size: int) -> str:
    """ "52 bytes", "2.0 KiB", "1.5 MiB"."""
    if size < 1024:
        return f"{size} bytes" if size != 1 else "1 byte"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def fence(text: str, language: str = "") -> list[str]:
    """`text` as a fenced code block that nothing inside it can close: CommonMark ends a block only on a
    backtick run at least as long as its opening, so the fence outgrows every run in the text."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    mark = "`" * max(3, longest + 1)
    return [f"{mark}{language}", text, mark]


# -- Content ---------------------------------------------------------------------------------------------


def content_section(name: str, facts: FileFacts, shown: Excerpt | None) -> list[str]:
    """ "## Content": the file's text in a fence tagged by its extension, with a marker when it was cut;
    a sentence instead for binary and empty files."""
    lines = ["## Content", ""]
    if not facts.is_text:
        mime = md.inline(facts.mime, limit=1000).replace("`", "'")
        lines.append(f"Binary file ({md.inline(facts.file_type, limit=1000)}, `{mime}`); contents not shown.")
        return lines
    if facts.size == 0 or shown is None:
        lines.append("Empty file.")
        return lines
    language = filetypes.fence_language(name, shown.text.split("\n", 1)[0])
    lines += fence(shown.text, language)
    if shown.cut == "bytes":
        of = f"{shown.shown_bytes:,} of {shown.total_bytes:,}"
        lines += ["", f"*Truncated: the first {of} bytes are shown.*"]
    elif shown.cut == "lines":
        total = f" of {facts.line_count:,}" if facts.line_count is not None else ""
        lines += ["", f"*Truncated: the first {shown.shown_lines:,}{total} lines are shown.*"]
    return lines


# -- Related Context -------------------------------------------------------------------------------------


def related_section(related: RelatedView) -> list[str]:
    """ "## Related Context": how many files the `.bucket-include` rules name and their size, the first
    ones by path with their sizes, and how many more."""
    lines = ["## Related Context", ""]
    if not related.count:
        lines.append("No other file of the bucket matches the `.bucket-include` rules.")
    else:
        noun, verb = ("file", "matches") if related.count == 1 else ("files", "match")
        lines += [
            f"{related.count:,} {noun}, {human_size(related.total_bytes)}, "
            f"{verb} the `.bucket-include` rules:",
            "",
        ]
        items = [f"{md.code(path, limit=1000)} ({short_size(size)})" for path, size in related.listed]
        lines += md.bullets(items, related.count, len(items))
    if related.bound:
        lines += ["", f"*The walk {related.bound}: there may be more.*"]
    return lines


# -- Grep Results ----------------------------------------------------------------------------------------


def grep_section(context: NoteContext) -> list[str]:
    """ "## Grep Results": per `[dirs:PATH]` section its patterns, then the matching files, each with its
    matches and context lines in a fence (`N:` a match, `N-` context, `--` a gap)."""
    lines = ["## Grep Results", ""]
    for section in context.greps:
        lines += _one_section(section)
    if context.grep_cut:
        notes = context.settings
        lines.append(
            f"*Cut: a note shows at most {notes.grep_max_matches:,} matches and "
            f"{notes.grep_max_bytes:,} bytes of grep results.*"
        )
        lines.append("")
    return lines[:-1] if lines[-1] == "" else lines


def _one_section(section: GrepSection) -> list[str]:
    patterns = ", ".join(md.code(p, limit=300) for p in section.patterns) or "none"
    lines = [f"### {md.code(section.path + '/', limit=300)}", "", f"Patterns: {patterns}", ""]
    # A problem or notice may quote the rule's path or a pattern, which the bucket wrote: escaped.
    notices = [f"*{md.escape(notice, limit=1000)}.*" for notice in section.notices]
    if notices:
        notices.append("")
    if section.problem:
        return [*lines, f"Not searched: {md.escape(section.problem, limit=1000)}.", "", *notices]
    files = _by_file(section.lines)
    at_least = "" if section.complete else "at least "
    tool = f" ({md.inline(section.tool)})" if section.tool else ""
    if not section.matches:
        return [*lines, f"No matches{tool}.", "", *notices]
    noun = "match" if section.matches == 1 else "matches"
    shown = sum(line.match for line in section.lines)
    where = f" in {len(files):,} {'file' if len(files) == 1 else 'files'}"
    if not shown:  # the sections before this one spent the note's budget, or nothing held up
        summary = f"{at_least}{section.matches:,} {noun}{tool}; none are shown."
        return [*lines, summary[0].upper() + summary[1:], "", *notices]
    if shown < section.matches:
        summary = f"{at_least}{section.matches:,} {noun}{tool}; the first {shown:,} are shown:"
    else:
        summary = f"{at_least}{section.matches:,} {noun}{where}{tool}:"
    lines += [summary[0].upper() + summary[1:], ""]
    for path, file_lines in files:
        count = sum(line.match for line in file_lines)
        title = f"{md.code(path, limit=1000)}: {count:,} {'match' if count == 1 else 'matches'}"
        lines += [title, "", *fence("\n".join(_numbered(file_lines))), ""]
    return [*lines, *notices]


def _by_file(lines: Iterable[GrepLine]) -> list[tuple[str, list[GrepLine]]]:
    groups: dict[str, list[GrepLine]] = {}
    for line in lines:
        groups.setdefault(line.path, []).append(line)
    return sorted(groups.items())


def _numbered(lines: list[GrepLine]) -> list[str]:
    width = len(str(lines[-1].line))
    out: list[str] = []
    for i, line in enumerate(lines):
        if i and line.line > lines[i - 1].line + 1:
            out.append("--")
        mark = ":" if line.match else "-"
        # md.inline: one line, no control characters (a CR inside would end the line in markdown).
        out.append(f"{line.line:>{width}}{mark} {md.inline(line.text, limit=_GREP_LINE_CHARS)}".rstrip())
    return out
