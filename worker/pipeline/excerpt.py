"""The start of a text file as its note's Content section shows it.

`detect` keeps the file's first bytes (the head, at most the note's `content_max_bytes`); `excerpt`
decodes them with the detected codec and cuts them to a line limit, saying what was left out so the note
can show a truncation marker. With a line limit the head is decoded a step at a time and decoding stops
once enough lines are in: a 5-line excerpt of a 256 KiB head decodes 16 KiB, not all of it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal

#: Bytes decoded per step while looking for the line limit.
DECODE_STEP = 16 * 1024


@dataclass(frozen=True, slots=True)
class Excerpt:
    """Decoded text (CRLF made LF, no final newline) and how much of the file it covers.

    `cut` is "" when it is the whole file, "bytes" when the head ended before the file did (`shown_bytes`
    of `total_bytes` are shown), "lines" when the line limit cut it (`shown_lines` lines)."""

    text: str
    shown_bytes: int
    total_bytes: int
    shown_lines: int
    cut: Literal["", "bytes", "lines"]


def excerpt(head: bytes | bytearray, codec: str, *, total_bytes: int, max_lines: int) -> Excerpt:
    """The excerpt of a file whose first bytes are `head` (all of them when `total_bytes <= len(head)`),
    at most `max_lines` lines (0: no limit)."""
    complete = total_bytes <= len(head)
    # The head decoded cleanly as part of the stream; only a character cut at its end can be incomplete,
    # and a non-final incremental decode holds that back (getstate says how many bytes it holds).
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    if max_lines <= 0:
        text = decoder.decode(head, final=complete)
        pos = len(head)
    else:
        parts: list[str] = []
        newlines = 0
        pos = 0
        while pos < len(head) and newlines < max_lines:
            step = head[pos : pos + DECODE_STEP]
            pos += len(step)
            part = decoder.decode(step, final=complete and pos >= len(head))
            parts.append(part)
            newlines += part.count("\n")
        text = "".join(parts)
    held = len(decoder.getstate()[0])
    shown = pos - held
    text = text.replace("\r\n", "\n")
    cut: Literal["", "bytes", "lines"] = "" if complete and pos >= len(head) else "bytes"
    if max_lines > 0:
        end = _nth_newline(text, max_lines)
        # More follows the limit's newline: text after it, bytes not decoded yet, or the rest of the file.
        if end >= 0 and (end + 1 < len(text) or cut):
            text, cut = text[:end], "lines"
    text = text.removesuffix("\n").removesuffix("\r")  # the final newline ends the last line
    lines = text.count("\n") + 1 if text or total_bytes else 0
    return Excerpt(text, shown if cut == "bytes" else total_bytes, total_bytes, lines, cut)


def _nth_newline(text: str, n: int) -> int:
    """Index of the `n`th "\\n" in `text`, or -1."""
    pos = -1
    for _ in range(n):
        pos = text.find("\n", pos + 1)
        if pos < 0:
            return -1
    return pos
