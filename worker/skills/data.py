"""Skills for structured data: JSON documents and CSV/TSV tables.

Both read only `inp.text` (the content the pipeline already holds) and stay linear in its size whatever
the file contains: JSON nesting is measured by a scan before `json.loads` (whose parser recurses) ever sees
the text, and CSV dialects are guessed with `csv.reader` on a few rows rather than `csv.Sniffer`, whose
quote-guessing regexes take tens of seconds on a hostile 64 KiB sample.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from itertools import accumulate, islice

from worker.pipeline.errors import FileContentError
from worker.pipeline.filetypes import extension
from worker.skills import md
from worker.skills.base import FieldValue, Section, SkillInput, SkillOutput

# --- JSON -------------------------------------------------------------------------------------------------

#: One JSON string (escapes included; an unterminated one runs to the end) or a run of characters that are
#: neither brackets nor quotes. Removing both leaves only the brackets outside strings. Possessive
#: quantifiers and the always-matching string end keep this one linear pass, never a backtracking one.
_NOT_BRACKETS = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[^"\[\]{}]++', re.DOTALL)
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def json_depth(text: str) -> int:
    """How deeply `text` nests arrays and objects (0 for a scalar), without recursing or parsing.

    Brackets inside strings do not count. On invalid JSON the figure can be off, but never below the depth
    the parser would reach before it gives up: up to its first error the parser sees the same brackets.
    """
    brackets = _NOT_BRACKETS.sub("", text)
    # A running sum of +1/-1 steps, all in C: a Python loop would take seconds on 8 MiB of brackets.
    return max(0, max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0))


def json_skill(inp: SkillInput) -> SkillOutput:
    """Whether the file is valid JSON, what its top level holds and how deep it nests."""
    text = inp.text
    if text is None:
        return SkillOutput(fields=unread_fields(inp), tags=["data/json"])
    limit = inp.limits.max_json_depth
    depth = json_depth(text)
    if depth > limit:
        raise FileContentError(f"JSON nested {depth:,} levels deep; the limit is {limit:,}", code="EDEPTH")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # "Unterminated string starting at" already ends with "at".
        error = f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
        return SkillOutput(fields={"valid": False, "error": error}, tags=["data/json"])
    except ValueError as exc:  # e.g. an integer longer than int's digit limit
        return SkillOutput(fields={"valid": False, "error": str(exc)}, tags=["data/json"])
    except RecursionError:  # only when max_json_depth is set above what the stack takes
        raise FileContentError(
            f"JSON nested {depth:,} levels deep; too deep to parse", code="EDEPTH"
        ) from None

    kind = _JSON_TYPES[type(value)]
    fields: dict[str, FieldValue] = {"valid": True, "top_level": kind, "keys": None, "depth": depth}
    sections = []
    most = inp.limits.max_list_items
    if isinstance(value, dict):
        fields["keys"] = len(value)
        shown = (f"{md.code(key)}: {_JSON_TYPES[type(item)]}" for key, item in islice(value.items(), most))
        sections.append(Section("Top-level keys", md.bullets(shown, len(value), most)))
    elif isinstance(value, list):
        fields["keys"] = len(value)
        # Counting by `type` keeps the per-item work in C; a million items is still quick.
        counts: Counter[str] = Counter()
        for item_type, count in Counter(map(type, value)).items():
            counts[_JSON_TYPES[item_type]] += count
        lines = [f"{len(value):,} {'item' if len(value) == 1 else 'items'}"]
        lines += [f"- {name}: {count:,}" for name, count in counts.most_common()]
        sections.append(Section("Items", lines))
    return SkillOutput(fields=fields, sections=sections, tags=["data/json"])


# --- CSV --------------------------------------------------------------------------------------------------

_SAMPLE_CHARS = 64 * 1024
_SAMPLE_ROWS = 20
_DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def csv_skill(inp: SkillInput) -> SkillOutput:
    """The table's delimiter, header, column count and row count (up to `max_csv_rows`)."""
    text = inp.text
    if text is None:
        return SkillOutput(fields=unread_fields(inp), tags=["data/csv"])
    default = "\t" if extension(inp.name) == "tsv" else ","
    delimiter, rows = _sample_rows(text, default)
    header = _has_header(rows)
    limit = inp.limits.max_csv_rows

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    nonblank = filter(None, reader)  # csv yields [] for a blank line
    try:
        first = next(nonblank, [])  # the sample's first row may have been cut at 64 KiB; this one is whole
        # Counting stops one past the limit so that "more" is detectable.
        counted = bool(first) + sum(1 for _ in islice(nonblank, limit + header))
    except csv.Error as exc:  # a field over csv's size limit, a bad quote in strict dialects…
        return SkillOutput(
            fields={"parsed": False, "error": f"line {reader.line_num:,}: {exc}"}, tags=["data/csv"]
        )
    data_rows = max(0, counted - header)
    fields: dict[str, FieldValue] = {
        "delimiter": _DELIMITERS.get(delimiter, delimiter),
        "columns": len(first),
        "rows": min(data_rows, limit),
        "header": header,
    }
    if data_rows > limit:
        fields["rows_note"] = "at least this many; counting stopped at the limit"
    sections = []
    if header:
        most = inp.limits.max_list_items
        names = (md.code(name) for name in rows[0][:most])
        sections.append(Section("Columns", md.bullets(names, len(rows[0]), most)))
    return SkillOutput(fields=fields, sections=sections, tags=["data/csv"])


def _sample_rows(text: str, default: str) -> tuple[str, list[list[str]]]:
    """The delimiter that splits the first rows most consistently into the most columns, and those rows.

    Each candidate parses at most `_SAMPLE_ROWS` rows of the first 64 KiB with `csv.reader`, so quoted
    delimiters and newlines are understood and the cost stays linear. `default` wins ties and lost causes.
    """
    sample = text[:_SAMPLE_CHARS]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # whole lines only: a cut row would miscount
    candidates = [default] + [d for d in _DELIMITERS if d != default]
    best: tuple[int, int] = (0, 0)  # (rows agreeing on the column count, that count)
    chosen: tuple[str, list[list[str]]] = (default, [])
    for delimiter in candidates:
        try:
            reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
            rows = list(islice(filter(None, reader), _SAMPLE_ROWS + 1))
        except csv.Error:
            continue
        if not rows:
            continue
        columns, agreeing = Counter(len(row) for row in rows).most_common(1)[0]
        if delimiter == default and not chosen[1]:
            chosen = (delimiter, rows)  # even one column: the default still describes the file
        if columns >= 2 and (agreeing, columns) > best:
            best, chosen = (agreeing, columns), (delimiter, rows)
    return chosen


def _has_header(rows: list[list[str]]) -> bool:
    """`csv.Sniffer.has_header`'s vote, without its re-sniffing: a column whose values below the first
    row are all numbers, or all one length, votes for a header if the first row's cell is not like them."""
    if len(rows) < 2:
        return False
    first = rows[0]
    votes = 0
    for index, title in enumerate(first):
        below = [row[index] for row in rows[1:] if len(row) == len(first)]
        if not below:
            continue
        if all(_is_number(value) for value in below):
            votes += -1 if _is_number(title) else 1
        elif len({len(value) for value in below}) == 1:
            votes += -1 if len(title) == len(below[0]) else 1
    return votes > 0


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


# --- shared -----------------------------------------------------------------------------------------------


def unread_fields(inp: SkillInput) -> dict[str, FieldValue]:
    """Fields for a file whose text the skill was not handed (binary, or larger than max_content_bytes)."""
    if not inp.facts.is_text:
        return {"parsed": False, "reason": "not text"}
    limit = inp.limits.max_content_bytes
    shown = f"{limit // 1024**2:,} MiB" if limit % 1024**2 == 0 else f"{limit:,} bytes"
    return {"parsed": False, "reason": f"larger than {shown}"}
