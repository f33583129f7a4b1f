"""Making untrusted strings safe for one line of a note's markdown body.

Everything a skill puts in a note came from the file, so every string goes through `inline` (one line, no
control characters, valid UTF-8) or `cell` (the same, for a table cell) or `code` (an inline code span
that the text cannot close early) or `escape` (plain text whose markdown and HTML are shown, not read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: In one line of the body: control characters and line separators (→ space), lone surrogates (→ U+FFFD).
_BODY_UNSAFE = re.compile("[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")
_BACKTICKS = re.compile("`+")
#: What CommonMark or Obsidian could read as markup in running text: emphasis, links and images
#: (`[`, `]`, `(`, `)`, `!`), code, HTML and entities (`<`, `>`, `&`), headings and tags (`#`), tables,
#: strikethrough, highlights, math, comments and block references (`~ = $ % ^`), and the escape itself.
#: CommonMark lets a backslash escape any ASCII punctuation, so each is shown as itself.
_MARKUP = re.compile(r"[\\`*_\[\]()<>!#|~=$%^&]")
#: Longest string shown in one list item or cell; longer ones are cut with an ellipsis.
MAX_ITEM_CHARS = 200


def inline(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """`text` as one safe line of markdown, cut to `limit` characters."""
    safe = _BODY_UNSAFE.sub(lambda m: "\ufffd" if m.group() >= "\ud800" else " ", text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def escape(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """`text` as one line of plain running text (a title, a sentence quoting a path): every character
    markdown, Obsidian or HTML could act on is backslash-escaped, so it reads exactly as given."""
    return _MARKUP.sub(lambda m: "\\" + m.group(), inline(text, limit))


def cell(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """`text` safe for a table cell (a `|` would end the cell)."""
    return inline(text, limit).replace("|", "\\|")


def code(text: str, limit: int = MAX_ITEM_CHARS) -> str:
    """`text` as an inline code span: the fence outgrows every backtick run inside it."""
    safe = inline(text, limit)
    longest = max((len(run) for run in _BACKTICKS.findall(safe)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if safe.startswith("`") or safe.endswith("`") or not safe.strip() else ""
    return f"{fence}{pad}{safe}{pad}{fence}"


def bullets(items: Iterable[str], total: int, limit: int) -> list[str]:
    """A markdown list of the (already safe) `items`, with a last line saying how many were left out of
    `total` when there were more than `limit`."""
    lines = [f"- {item}" for item in list(items)[:limit]]
    if total > len(lines):
        lines.append(f"- … and {total - len(lines):,} more")
    return lines


def table(rows: Iterable[tuple[str, str]], header: tuple[str, str] = ("Property", "Value")) -> list[str]:
    """A two-column markdown table; cells are escaped here."""
    out = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    out += [f"| {cell(key)} | {cell(value)} |" for key, value in rows]
    return out
