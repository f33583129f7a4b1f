"""Learn a file's facts in one streaming pass: hash, size, type, encoding, lines, words and the excerpt
of its text that the note's Content section shows.

The file is read once, in `CHUNK_SIZE` pieces, so memory stays flat whatever its size: only the first
bytes (the "head", up to the content cap) are kept. The head decides the type before the text work starts
(its first `DECIDE_BYTES` only, so the type never depends on the note's settings):

* a known magic number (PNG, ZIP, ELF, ...) → that binary format, no text work at all;
* a UTF-16/UTF-32 byte-order mark → text in that encoding (it is full of NULs, so this comes first);
* a NUL byte in the first `SNIFF_BYTES` → binary;
* otherwise text if the whole stream decodes as UTF-8 ("ascii" if every byte is < 0x80), else latin-1 if
  the head has few control characters, else binary.

Latin-1 words are counted alongside UTF-8 ones (cheaply: shared for ASCII chunks), so a file that turns
out not to be UTF-8 near its end needs no second pass. Bad bytes never raise; they decide the outcome.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.messages import FileFacts
from worker.pipeline import filetypes
from worker.pipeline.errors import FileAccessError, errno_name
from worker.pipeline.excerpt import Excerpt, excerpt
from worker.pipeline.textscan import TextScan, Utf8Scan, WideScan

#: Read size; a module constant so tests can shrink it to exercise chunk boundaries.
CHUNK_SIZE = 1024 * 1024
#: How much of the start decides text vs binary (NULs, control characters), as git does.
SNIFF_BYTES = 8 * 1024
#: How much of the head the type is decided on (magic numbers, the PE header's offset, the sniff).
DECIDE_BYTES = 64 * 1024
#: How much of the start is kept for the note's Content section by default (`notes.content_max_bytes`).
CONTENT_BYTES = 256 * 1024

# BOMs, longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
]
#: Control characters that plain text is allowed to contain.
_TEXT_CONTROLS = frozenset(b"\t\n\r\f")
#: Every byte value that is not a control character (the complement of what `_few_controls` counts).
_NOT_CONTROLS = bytes(b for b in range(256) if not ((b < 0x20 and b not in _TEXT_CONTROLS) or b == 0x7F))
#: Above this share of other control characters, undecodable bytes are binary rather than latin-1.
_MAX_CONTROL_RATIO = 0.05


@dataclass(frozen=True, slots=True)
class Described:
    """A file read once: its facts, the excerpt of its text (None for binary, or with no content shown),
    and its bytes when small enough to keep."""

    facts: FileFacts
    excerpt: Excerpt | None
    content: bytes | None

    @property
    def preview(self) -> str:
        """The excerpt's text ("" when there is none)."""
        return self.excerpt.text if self.excerpt is not None else ""


def build_facts(
    fd: int, st: os.stat_result, *, preview_lines: int, name: str = "", content_bytes: int = CONTENT_BYTES
) -> tuple[FileFacts, str]:
    """`describe` without keeping the content: the facts and the excerpt's text."""
    described = describe(fd, st, preview_lines=preview_lines, name=name, content_bytes=content_bytes)
    return described.facts, described.preview


def describe(
    fd: int,
    st: os.stat_result,
    *,
    preview_lines: int,
    name: str = "",
    keep: int = 0,
    content_bytes: int = CONTENT_BYTES,
) -> Described:
    """Read `fd` from its current position and describe it; the bytes are kept when there are at most
    `keep` of them (the skills read them instead of the file a second time).

    `st` is the descriptor's fstat: at most `st.st_size` bytes are read, so a file still growing cannot
    push us past the size limit already checked, and the facts describe the file as it was stat'ed.
    `name` (the file's name or path) lets the extension name text types. The excerpt is the text of the
    first `content_bytes` bytes (0: no excerpt), at most `preview_lines` lines of it (0: no line limit).
    Raises only `FileAccessError`, on read errors.
    """
    hasher = hashlib.sha256()
    size = 0
    head = bytearray()
    pending: list[bytes] = []  # chunks read before the head was big enough to decide on
    scan: TextScan | None = None
    binary: filetypes.Kind | None = None
    decided = False
    kept: list[bytes] | None = [] if st.st_size <= keep else None
    head_cap = max(DECIDE_BYTES, content_bytes)

    for chunk in _chunks(fd, st.st_size, name):
        hasher.update(chunk)
        size += len(chunk)
        if kept is not None:
            kept.append(chunk)
        if len(head) < head_cap:
            head += chunk[: head_cap - len(head)]
        if decided:
            if scan is not None:
                scan.feed(chunk)
            continue
        pending.append(chunk)
        if len(head) >= SNIFF_BYTES:
            binary, scan = _decide(bytes(head[:DECIDE_BYTES]), name)
            decided = True
            _feed_all(scan, pending)
            pending.clear()
    if not decided:
        binary, scan = _decide(bytes(head[:DECIDE_BYTES]), name)
        _feed_all(scan, pending)

    sha256 = hasher.hexdigest()
    content = b"".join(kept) if kept is not None else None
    result = scan.finish() if scan is not None else None
    if result is None:
        kind = binary or filetypes.BINARY
        facts = FileFacts(size=size, sha256=sha256, file_type=kind.file_type, mime=kind.mime, is_text=False)
        return Described(facts, None, content)

    shown = None
    if content_bytes > 0:
        # Only the cap is decoded: a head kept longer for the type decision is not shown.
        text_head = head if len(head) <= content_bytes else head[:content_bytes]
        shown = excerpt(text_head, result.codec, total_bytes=size, max_lines=preview_lines)
    first_line = _first_line(bytes(head[:256]), result.codec)
    kind = filetypes.text_kind(name, first_line)
    facts = FileFacts(
        size=size,
        sha256=sha256,
        file_type=kind.file_type,
        mime=kind.mime,
        is_text=True,
        encoding=result.encoding,
        line_count=result.lines,
        word_count=result.words,
    )
    return Described(facts, shown, content)


def _chunks(fd: int, limit: int, name: str) -> Iterator[bytes]:
    remaining = limit
    while remaining > 0:
        try:
            chunk = os.read(fd, min(CHUNK_SIZE, remaining))
        except OSError as exc:
            message = f"{name}: read failed: {exc.strerror or exc}"
            raise FileAccessError(message, code=errno_name(exc)) from exc
        if not chunk:  # shrank since fstat: describe what is there
            return
        remaining -= len(chunk)
        yield chunk


def _decide(head: bytes, name: str) -> tuple[filetypes.Kind | None, TextScan | None]:
    """From the head: a binary kind (no scan), or the text scan that will settle the encoding."""
    magic = filetypes.sniff_binary(head, name)
    if magic is not None:
        return magic, None
    for bom, encoding, codec in _BOMS:
        if head.startswith(bom):
            return None, WideScan(encoding=encoding, codec=codec)
    sniff = head[:SNIFF_BYTES]
    if b"\x00" in sniff:
        return None, None
    return None, Utf8Scan(bom=head.startswith(codecs.BOM_UTF8), latin1_ok=_few_controls(sniff))


def _feed_all(scan: TextScan | None, chunks: list[bytes]) -> None:
    if scan is not None:
        for chunk in chunks:
            scan.feed(chunk)


def _few_controls(sample: bytes) -> bool:
    if not sample:
        return True
    # Delete every byte that is not a control character and count what is left: one C-level pass (a
    # Python loop over the 8 KiB sample cost ~0.3 ms a file, more than hashing it).
    controls = len(sample.translate(None, _NOT_CONTROLS))
    return controls / len(sample) <= _MAX_CONTROL_RATIO


def _first_line(head: bytes, codec: str) -> str:
    # A non-final incremental decode holds back a character cut at the end instead of garbling it.
    decoder = codecs.getincrementaldecoder(codec)(errors="replace")
    return decoder.decode(head, final=False).split("\n", 1)[0]
