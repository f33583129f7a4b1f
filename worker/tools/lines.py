"""Which lines of a text a regular expression matches: shared by the grep rules, the directory grep's
Python fallback and the context grep's."""

from __future__ import annotations

import re


def matching_lines(regex: re.Pattern[str], text: str, limit: int | None = None) -> list[tuple[int, int, int]]:
    """(line number, line start, line end) of each line of `text` with a match, in order, at most `limit`.

    One `finditer` over the whole text, lines counted incrementally from the previous match (counting from
    the start each time was quadratic on a file that matches on every line), one entry per line.
    """
    found: list[tuple[int, int, int]] = []
    line, counted_to, last = 1, 0, 0
    for m in regex.finditer(text):
        pos = m.start()
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        if line == last:
            continue
        last = line
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        found.append((line, start, len(text) if end < 0 else end))
        if limit is not None and len(found) >= limit:
            break
    return found
