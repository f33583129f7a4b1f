"""Streaming text checks: does a byte stream decode, in which encoding, and how many lines and words.

A scan is fed chunks in order and finished once; `finish` returns None when the stream is not text after
all. Words are maximal runs of non-whitespace characters (as `str.split()` sees them), counted per chunk
and stitched together: a word cut by a chunk boundary is counted once.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ScanResult:
    """A stream that is text: its encoding's name, the codec that decodes it, its lines and words."""

    encoding: str
    codec: str
    lines: int
    words: int


class TextScan(Protocol):
    """Fed a file's chunks in order, then asked once whether it was text."""

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> ScanResult | None: ...


@dataclass(frozen=True, slots=True)
class _ChunkWords:
    count: int  # words in the chunk on its own
    starts_in_word: bool
    ends_in_word: bool


def _chunk_words(text: str) -> _ChunkWords | None:
    if not text:
        return None
    return _ChunkWords(len(text.split()), not text[0].isspace(), not text[-1].isspace())


class _WordCounter:
    """Sums per-chunk counts, merging the two halves of a word split across a boundary."""

    def __init__(self) -> None:
        self.count = 0
        self._in_word = False

    def add(self, words: _ChunkWords | None) -> None:
        if words is None:
            return
        joined = self._in_word and words.starts_in_word
        self.count += words.count - (1 if joined else 0)
        self._in_word = words.ends_in_word


class Utf8Scan:
    """UTF-8 (or ASCII, or UTF-8 with a BOM), falling back to latin-1 when allowed.

    Lines are counted in bytes (b"\\n" is a newline in all three encodings), plus one for a last line
    without a newline.
    """

    def __init__(self, *, bom: bool, latin1_ok: bool) -> None:
        self._bom = bom
        # "utf-8-sig" drops the BOM, so it is neither a character nor glued to the first word.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig" if bom else "utf-8")(errors="strict")
        self._utf8_ok = True
        self._latin1_ok = latin1_ok
        self._ascii = True
        self._utf8_words = _WordCounter()
        self._latin1_words = _WordCounter()
        self._newlines = 0
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        if not chunk or not (self._utf8_ok or self._latin1_ok):
            return  # already known not to be text: nothing left to learn
        self._newlines += chunk.count(b"\n")
        self._last = chunk[-1:]
        is_ascii = chunk.isascii()
        self._ascii = self._ascii and is_ascii
        utf8_words: _ChunkWords | None = None
        if self._utf8_ok:
            try:
                text = self._decoder.decode(chunk)
            except UnicodeDecodeError:
                self._utf8_ok = False
            else:
                utf8_words = _chunk_words(text)
                self._utf8_words.add(utf8_words)
        if self._latin1_ok:
            # An ASCII chunk that decoded as UTF-8 reads the same in latin-1: reuse its count.
            if is_ascii and self._utf8_ok:
                self._latin1_words.add(utf8_words)
            else:
                self._latin1_words.add(_chunk_words(chunk.decode("latin-1")))

    def finish(self) -> ScanResult | None:
        """The verdict, once the whole stream has been fed."""
        if self._utf8_ok:
            try:
                self._decoder.decode(b"", final=True)  # a multi-byte character cut off by EOF
            except UnicodeDecodeError:
                self._utf8_ok = False
        lines = self._newlines + (1 if self._last not in (b"", b"\n") else 0)
        if self._utf8_ok:
            if self._bom:
                return ScanResult("utf-8-sig", "utf-8-sig", lines, self._utf8_words.count)
            encoding = "ascii" if self._ascii else "utf-8"
            return ScanResult(encoding, "utf-8", lines, self._utf8_words.count)
        if self._latin1_ok:
            return ScanResult("latin-1", "latin-1", lines, self._latin1_words.count)
        return None


class WideScan:
    """UTF-16 or UTF-32 announced by a BOM; lines are counted in decoded characters, because a 0x0A byte
    in these encodings is often half of some other character."""

    def __init__(self, *, encoding: str, codec: str) -> None:
        self._encoding = encoding
        self._codec = codec
        # The BOM-detecting codec ("utf-16") consumes the mark and picks the byte order from it.
        self._decoder = codecs.getincrementaldecoder(codec)(errors="strict")
        self._ok = True
        self._words = _WordCounter()
        self._newlines = 0
        self._last = ""

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        if not self._ok:
            return
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError:
            self._ok = False  # a BOM-like start on something that is not text after all
            return
        self._count(text)

    def finish(self) -> ScanResult | None:
        """The verdict, once the whole stream has been fed."""
        if self._ok:
            try:
                self._count(self._decoder.decode(b"", final=True))
            except UnicodeDecodeError:
                self._ok = False
        if not self._ok:
            return None
        lines = self._newlines + (1 if self._last not in ("", "\n") else 0)
        return ScanResult(self._encoding, self._codec, lines, self._words.count)

    def _count(self, text: str) -> None:
        if text:
            self._newlines += text.count("\n")
            self._last = text[-1]
            self._words.add(_chunk_words(text))
