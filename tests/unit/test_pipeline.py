"""The worker's one-file pipeline: safe opening, fact finding, note rendering and the whole job."""

from __future__ import annotations

import codecs
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol.messages import FileFacts
from worker.pipeline import detect, safe_open
from worker.pipeline.detect import build_facts
from worker.pipeline.errors import FileAccessError, FileTooLargeError, JobError
from worker.pipeline.excerpt import Excerpt
from worker.pipeline.note import render_note, write_atomic
from worker.pipeline.process import process_file
from worker.pipeline.safe_open import open_regular

pytestmark = pytest.mark.timeout(30)

MAX = 10 * 1024 * 1024


def facts_of(path: Path, *, preview_lines: int = 20, max_bytes: int = MAX) -> tuple[FileFacts, str]:
    fd, st = open_regular(str(path), max_bytes)
    try:
        return build_facts(fd, st, preview_lines=preview_lines, name=path.name)
    finally:
        os.close(fd)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "CHUNK_SIZE", 3)


# -- text and encodings ------------------------------------------------------------------------------


def test_utf8_text(tmp_path: Path) -> None:
    text = "# Überschrift\n\nGrüße aus Köln — ünd mehr.\n"
    facts, preview = facts_of(write(tmp_path, "notes.md", text.encode()))
    assert facts.is_text and facts.encoding == "utf-8"
    assert (facts.file_type, facts.mime) == ("markdown", "text/markdown")
    assert facts.line_count == 3
    assert facts.word_count == len(text.split())
    assert preview == text.rstrip("\n")


def test_ascii_text(tmp_path: Path) -> None:
    facts, preview = facts_of(write(tmp_path, "main.py", b"import os\nprint(os.sep)\n"))
    assert (facts.encoding, facts.file_type, facts.mime) == ("ascii", "python", "text/x-python")
    assert (facts.line_count, facts.word_count) == (2, 3)
    assert preview == "import os\nprint(os.sep)"


def test_utf8_with_bom(tmp_path: Path) -> None:
    facts, preview = facts_of(write(tmp_path, "a.txt", codecs.BOM_UTF8 + b"one two\n"))
    assert (facts.encoding, facts.word_count, facts.line_count) == ("utf-8-sig", 2, 1)
    assert preview == "one two"


@pytest.mark.parametrize(
    ("codec", "encoding"),
    [(codec, codec) for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")],
)
def test_utf16_and_utf32_with_bom(tmp_path: Path, codec: str, encoding: str) -> None:
    bom = {
        "utf-16-le": codecs.BOM_UTF16_LE,
        "utf-16-be": codecs.BOM_UTF16_BE,
        "utf-32-le": codecs.BOM_UTF32_LE,
        "utf-32-be": codecs.BOM_UTF32_BE,
    }[codec]
    # U+010A encodes as 0x0A 0x01 in UTF-16-LE: a newline byte that is not a newline.
    text = "héllo wörld Ċ\r\nline two\nthree"
    facts, preview = facts_of(write(tmp_path, "wide.txt", bom + text.encode(codec)))
    assert facts.is_text and facts.encoding == encoding
    assert (facts.line_count, facts.word_count) == (3, 6)
    assert preview == "héllo wörld Ċ\nline two\nthree"


def test_latin1_bytes(tmp_path: Path) -> None:
    text = "café naïve façade\nÀ bientôt\n"
    facts, preview = facts_of(write(tmp_path, "old.txt", text.encode("latin-1")))
    assert (facts.is_text, facts.encoding) == (True, "latin-1")
    assert (facts.line_count, facts.word_count) == (2, 5)
    assert preview == text.rstrip("\n")


def test_latin1_detected_late_keeps_exact_word_count(tmp_path: Path, small_chunks: None) -> None:
    # Valid UTF-8 for well past the sniffed head, then one latin-1 byte: no second pass, same count.
    # "Å" is C3 85 in UTF-8, and 0x85 is a space (NEL) in latin-1: one UTF-8 word "aÅb" is two latin-1 words.
    data = ("aÅb word\xa0x " * 2000).encode() + b"fin\xe9"
    facts, _ = facts_of(write(tmp_path, "late.txt", data))
    assert facts.encoding == "latin-1"
    assert facts.word_count == len(data.decode("latin-1").split()) == 4 * 2000 + 1


def test_binary_with_nul_bytes(tmp_path: Path) -> None:
    facts, preview = facts_of(write(tmp_path, "blob.dat", b"abc\x00def\n" * 10))
    assert not facts.is_text
    assert (facts.file_type, facts.mime) == ("binary", "application/octet-stream")
    assert (facts.encoding, facts.line_count, facts.word_count) == (None, None, None)
    assert preview == ""


def test_undecodable_control_heavy_bytes_are_binary(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "noise", bytes(range(1, 256)) * 8))
    assert not facts.is_text and facts.encoding is None


def test_utf16_bom_on_garbage_is_binary(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "odd", codecs.BOM_UTF16_LE + b"\x00\xd8\x41"))  # lone surrogate
    assert not facts.is_text


def test_truncated_utf8_at_eof_falls_back(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "cut.txt", b"ok " + "é".encode()[:1]))
    assert facts.encoding == "latin-1"


def test_empty_file(tmp_path: Path) -> None:
    facts, preview = facts_of(write(tmp_path, "empty.txt", b""))
    assert facts.size == 0 and facts.sha256 == hashlib.sha256(b"").hexdigest()
    assert (facts.is_text, facts.line_count, facts.word_count) == (True, 0, 0)
    assert preview == ""


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", 0),
        (b"a", 1),
        (b"a\n", 1),
        (b"\n", 1),
        (b"a\nb", 2),
        (b"a\nb\n", 2),
        (b"a\r\nb\r\n", 2),
        (b"\n\n", 2),
    ],
)
def test_line_counts(tmp_path: Path, data: bytes, lines: int) -> None:
    assert facts_of(write(tmp_path, "l.txt", data))[0].line_count == lines


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4096])
def test_words_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(detect, "CHUNK_SIZE", chunk)
    text = "  alpha béta\tgamma\n\ndelta  ε-psilon ζήτα\u3000end " * 50 + "tail"
    path = write(tmp_path, "w.txt", text.encode())
    facts, _ = facts_of(path)
    assert facts.word_count == len(text.split())
    assert facts.line_count == text.count("\n") + 1
    assert facts.sha256 == hashlib.sha256(text.encode()).hexdigest()
    wide, _ = facts_of(write(tmp_path, "w16.txt", text.encode("utf-16")))
    assert (wide.word_count, wide.line_count) == (facts.word_count, facts.line_count)


def test_sha256_and_size_over_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "CHUNK_SIZE", 1000)
    data = os.urandom(123_457)
    facts, _ = facts_of(write(tmp_path, "r.bin", data))
    assert facts.size == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()


def test_preview_is_limited_and_strips_crlf(tmp_path: Path) -> None:
    data = b"".join(b"line %d\r\n" % i for i in range(100))
    facts, preview = facts_of(write(tmp_path, "many.txt", data), preview_lines=3)
    assert preview == "line 0\nline 1\nline 2"
    assert facts.line_count == 100


def test_preview_lines_zero_means_no_line_limit(tmp_path: Path) -> None:
    data = b"".join(b"line %d\r\n" % i for i in range(5000))
    _, preview = facts_of(write(tmp_path, "many.txt", data), preview_lines=0)
    assert preview == "\n".join(f"line {i}" for i in range(5000))


def test_content_of_huge_file_is_bounded_by_the_content_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "one-line.txt", "é".encode() * 200_000)  # 400,000 bytes
    fd, st = open_regular(str(path), MAX)
    try:
        described = detect.describe(fd, st, preview_lines=0, name=path.name, content_bytes=100_001)
    finally:
        os.close(fd)
    assert described.facts.word_count == 1
    shown = described.excerpt
    assert shown is not None and shown.cut == "bytes" and set(shown.text) == {"é"}
    # The cap falls inside a two-byte character: it is held back, not shown as a replacement character.
    assert (shown.shown_bytes, shown.total_bytes, len(shown.text)) == (100_000, 400_000, 50_000)


def test_the_default_content_cap_is_256_kib(tmp_path: Path) -> None:
    facts, preview = facts_of(write(tmp_path, "big.txt", b"0123456789abcde\n" * 32_768), preview_lines=0)
    assert len(preview) == 256 * 1024 - 1  # the head's last newline ends its last line
    assert facts.line_count == 32_768


def test_no_content_is_kept_or_decoded_with_a_zero_cap(tmp_path: Path) -> None:
    path = write(tmp_path, "a.txt", b"hello\n" * 10)
    fd, st = open_regular(str(path), MAX)
    try:
        described = detect.describe(fd, st, preview_lines=0, name="a.txt", content_bytes=0)
    finally:
        os.close(fd)
    assert described.excerpt is None and described.facts.is_text and described.facts.line_count == 10


def test_a_line_limit_decodes_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.pipeline import excerpt as excerpt_mod

    decoded: list[int] = []
    real = excerpt_mod.codecs.getincrementaldecoder

    def counting(codec: str):  # type: ignore[no-untyped-def]
        cls = real(codec)

        class Counting(cls):  # type: ignore[misc, valid-type]
            def decode(self, data, final=False):  # type: ignore[no-untyped-def]
                decoded.append(len(data))
                return super().decode(data, final)

        return Counting

    monkeypatch.setattr(excerpt_mod.codecs, "getincrementaldecoder", counting)
    head = b"x" * 100 + b"\n" + b"y" * (1024 * 1024)
    shown = excerpt_mod.excerpt(head, "utf-8", total_bytes=len(head), max_lines=1)
    assert (shown.text, shown.cut, shown.shown_lines) == ("x" * 100, "lines", 1)
    assert sum(decoded) <= excerpt_mod.DECODE_STEP


@pytest.mark.parametrize(
    ("data", "max_lines", "text", "cut"),
    [
        (b"a\nb\n", 2, "a\nb", ""),
        (b"a\nb\n", 1, "a", "lines"),
        (b"a\nb", 2, "a\nb", ""),
        (b"a\r\nb\r\n", 0, "a\nb", ""),
        (b"\n", 0, "", ""),
    ],
)
def test_excerpt_line_limits(data: bytes, max_lines: int, text: str, cut: str) -> None:
    from worker.pipeline.excerpt import excerpt

    shown = excerpt(data, "utf-8", total_bytes=len(data), max_lines=max_lines)
    assert (shown.text, shown.cut) == (text, cut)


def test_shebang_names_an_extensionless_script(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "tool", b"#!/usr/bin/env python3.11\nprint(1)\n"))
    assert facts.file_type == "python"


def test_reads_no_more_than_the_stat_size(tmp_path: Path) -> None:
    path = write(tmp_path, "grow.txt", b"one two\n")
    fd, st = open_regular(str(path), MAX)
    try:
        with open(path, "ab") as f:
            f.write(b"three four\n")  # grows after fstat
        facts, _ = build_facts(fd, st, preview_lines=5, name="grow.txt")
    finally:
        os.close(fd)
    assert (facts.size, facts.word_count) == (8, 2)


# -- binary formats ----------------------------------------------------------------------------------


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00\x00\x00\x01" * 2 + b"\x08\x06\x00\x00\x00"


def _zip(name: str = "a.txt") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, "hello")
    return buf.getvalue()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "file_type", "mime"),
    [
        ("image.png", PNG, "png", "image/png"),
        ("image.txt", PNG, "png", "image/png"),  # magic beats extension
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg", "image/jpeg"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00", "gif", "image/gif"),
        ("doc.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf", "application/pdf"),
        ("a.zip", _zip(), "zip", "application/zip"),
        (
            "report.docx",
            _zip("word/document.xml"),
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("a.gz", gzip.compress(b"hello hello hello"), "gzip", "application/gzip"),
        ("a.tar", _tar(), "tar", "application/x-tar"),
        ("a.xz", b"\xfd7zXZ\x00\x00\x04", "xz", "application/x-xz"),
        ("prog", b"\x7fELF\x02\x01\x01\x00" + bytes(56), "elf", "application/x-executable"),
        ("a.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp", "image/webp"),
        ("m.wasm", b"\x00asm\x01\x00\x00\x00", "wasm", "application/wasm"),
        (
            "a.exe",
            b"MZ" + bytes(0x3A) + (0x40).to_bytes(4, "little") + b"PE\x00\x00",
            "pe",
            "application/vnd.microsoft.portable-executable",
        ),
        ("m.pyc", b"\xa7\x0d\x0d\x0a" + bytes(12) + b"\xe3", "pyc", "application/x-python-code"),
    ],
)
def test_magic_numbers(tmp_path: Path, name: str, data: bytes, file_type: str, mime: str) -> None:
    facts, preview = facts_of(write(tmp_path, name, data))
    assert (facts.file_type, facts.mime, facts.is_text) == (file_type, mime, False)
    assert preview == ""


def test_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("create table t (x)")
    db.close()
    assert facts_of(path)[0].file_type == "sqlite"


def test_text_that_starts_like_a_weak_magic_stays_text(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "notes.txt", b"MZ is a fine start, BZh too.\n"))
    assert (facts.is_text, facts.file_type) == (True, "text")


# -- refusing what is not a regular file -------------------------------------------------------------


def test_size_exactly_at_limit_is_accepted(tmp_path: Path) -> None:
    facts, _ = facts_of(write(tmp_path, "ten.txt", b"x" * 10), max_bytes=10)
    assert facts.size == 10


def test_size_over_limit_is_refused_without_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "eleven.txt", b"x" * 11)

    def no_open(*args: object) -> int:
        raise AssertionError("an oversized file must not be opened")

    monkeypatch.setattr(safe_open.os, "open", no_open)
    with pytest.raises(FileTooLargeError) as err:
        open_regular(str(path), 10)
    assert err.value.category == "FileContent" and "too large" in str(err.value)
    assert not err.value.retryable


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileAccessError) as err:
        open_regular(str(fifo), MAX)
    assert err.value.category == "FileAccess"
    assert "is a FIFO, not a regular file" in str(err.value)


def test_a_file_a_writer_holds_locked_is_a_retryable_file_access_error(tmp_path: Path) -> None:
    path = write(tmp_path, "busy.csv", b"a,b\n")
    with open(path, "rb+") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # another open file description: it conflicts even in-process
        with pytest.raises(FileAccessError) as err:
            open_regular(str(path), MAX)
        assert err.value.code == "ELOCKED" and err.value.retryable and "flock" in str(err.value)
        fcntl.flock(writer, fcntl.LOCK_UN)
    fd, _ = open_regular(str(path), MAX)  # released: read as usual
    os.close(fd)


def test_a_posix_write_lock_held_by_another_process_is_seen(tmp_path: Path) -> None:
    path = write(tmp_path, "busy.db", b"x" * 100)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCKF, str(path)], stdout=subprocess.PIPE, stdin=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(FileAccessError) as err:
            open_regular(str(path), MAX)
        assert err.value.code == "ELOCKED" and "POSIX" in str(err.value)
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes our ends of its pipes (a later test counts open fds)


_HOLD_LOCKF = """
import fcntl, sys
fh = open(sys.argv[1], "rb+")
fcntl.lockf(fh, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _pretend_regular(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Make the pre-open lstat see a regular file, as if the path were swapped right after it."""
    decoy = os.lstat(write(tmp_path, "decoy", b"x"))
    monkeypatch.setattr(safe_open.os, "lstat", lambda path: decoy)


def test_fifo_swapped_in_after_lstat_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _pretend_regular(monkeypatch, tmp_path)
    with pytest.raises(FileAccessError) as err:  # O_NONBLOCK: returns at once, fstat refuses it
        open_regular(str(fifo), MAX)
    assert err.value.retryable  # a different inode than the one lstat saw


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path, "secret.txt", b"secret")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(FileAccessError, match="is a symlink; symlinks are not followed"):
        open_regular(str(link), MAX)


def test_symlink_swapped_in_after_lstat_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "link.txt"
    link.symlink_to(write(tmp_path, "secret.txt", b"secret"))
    _pretend_regular(monkeypatch, tmp_path)
    with pytest.raises(FileAccessError, match="symlinks are not followed") as err:  # O_NOFOLLOW → ELOOP
        open_regular(str(link), MAX)
    assert err.value.code == "ELOOP"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match="is a directory, not a regular file"):
        open_regular(str(tmp_path), MAX)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_character_device_is_refused() -> None:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(FileAccessError, match="is a character device, not a regular file"):
        open_regular("/dev/null", MAX)


def test_vanished_file(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match="file vanished before processing") as err:
        open_regular(str(tmp_path / "gone.txt"), MAX)
    assert (err.value.category, err.value.code) == ("FileAccess", "ENOENT")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.txt", b"x")
    path.chmod(0)
    with pytest.raises(FileAccessError, match="permission denied") as err:
        open_regular(str(path), MAX)
    assert err.value.code == "EACCES"


# -- the note ----------------------------------------------------------------------------------------

FRONT_KEYS = [
    "type",
    "source",
    "bucket",
    "relpath",
    "size",
    "sha256",
    "kind",
    "mime",
    "encoding",
    "lines",
    "words",
    "skill",
    "processed_at",
    "worker",
    "job",
    "tags",
]


def parse_front_matter(note: str) -> tuple[dict[str, object], str]:
    """A deliberately tiny reader: `key: <JSON value>` lines between two `---` lines."""
    lines = note.split("\n")
    assert lines[0] == "---"
    end = lines.index("---", 1)
    front: dict[str, object] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(": ")
        assert sep and re.fullmatch(r"[a-z0-9_]+", key), line
        front[key] = json.loads(value)
    return front, "\n".join(lines[end + 1 :])


def text_facts(**overrides: object) -> FileFacts:
    fields: dict[str, object] = {
        "size": 2048,
        "sha256": "ab" * 32,
        "file_type": "python",
        "mime": "text/x-python",
        "is_text": True,
        "encoding": "utf-8",
        "line_count": 3,
        "word_count": 4,
    }
    fields.update(overrides)
    return FileFacts.model_validate(fields)


def note_for(facts: FileFacts, preview: str, relpath: str = "src/app.py", **kw: object) -> str:
    shown = Excerpt(preview, facts.size, facts.size, preview.count("\n") + 1, "") if facts.is_text else None
    args: dict[str, object] = {
        "source_path": f"/drop/{relpath}",
        "bucket": "inbox",
        "relpath": relpath,
        "facts": facts,
        "content": shown,
        "processed_at": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        "worker": "w-1",
    }
    args.update(kw)
    return render_note(**args)  # type: ignore[arg-type]


def test_note_front_matter_parses() -> None:
    facts = text_facts()
    front, body = parse_front_matter(note_for(facts, "import os\nprint(1)\nx = 2"))
    assert list(front) == FRONT_KEYS
    assert front == {
        "type": "open-buckets-note",
        "source": "/drop/src/app.py",
        "bucket": "inbox",
        "relpath": "src/app.py",
        "size": 2048,
        "sha256": "ab" * 32,
        "kind": "python",
        "mime": "text/x-python",
        "encoding": "utf-8",
        "lines": 3,
        "words": 4,
        "skill": None,
        "processed_at": "2024-05-06T07:08:09Z",
        "worker": "w-1",
        "job": None,
        "tags": ["openbuckets", "kind/python"],
    }
    assert "# app.py" in body.split("\n")
    assert "| Size | 2.0 KiB (2,048 bytes) |" in body
    assert "```python\nimport os\nprint(1)\nx = 2\n```" in body


def test_note_time_is_converted_to_utc() -> None:
    at = datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    front, _ = parse_front_matter(note_for(text_facts(), "x", processed_at=at))
    assert front["processed_at"] == "2024-05-06T07:08:09Z"


def test_note_for_binary() -> None:
    facts = FileFacts(size=10, sha256="cd" * 32, file_type="png", mime="image/png", is_text=False)
    front, body = parse_front_matter(note_for(facts, "", relpath="pics/cat.png"))
    assert (front["encoding"], front["lines"], front["words"]) == (None, None, None)
    assert front["tags"] == ["openbuckets", "kind/png"]
    assert "contents not shown" in body and "```" not in body


def test_hostile_names_cannot_break_the_yaml_or_the_title() -> None:
    relpath = 'evil"\n---\ntype: "pwned": [x]\udcff\u2028.txt'
    front, body = parse_front_matter(note_for(text_facts(), "x", relpath=relpath))
    assert front["relpath"] == relpath and front["kind"] == "python"
    title = [line for line in body.split("\n") if line.startswith("# ")]
    assert len(title) == 1 and "\ufffd" in title[0]
    note_for(text_facts(), "x", relpath=relpath).encode("utf-8")  # no lone surrogates left to write


@pytest.mark.parametrize(
    "name",
    [
        "![[Other note]].md",
        "<img src=x onerror=alert(1)>.txt",
        "[click me](javascript:alert(1)).md",
        "a*b_c`d~~e==f$g%%h^i&amp;#tag|x\\",
    ],
)
def test_a_file_name_cannot_add_markdown_or_html_to_the_title(name: str) -> None:
    _, body = parse_front_matter(note_for(text_facts(), "x", relpath=f"d/{name}"))
    title = next(line for line in body.split("\n") if line.startswith("# "))
    # Every character markdown, Obsidian or HTML acts on is backslash-escaped: it reads as the name.
    unescaped = re.sub(r"\\(.)", "", title[2:])
    assert not set(unescaped) & set("\\`*_[]()<>!#|~=$%^&"), title
    assert re.sub(r"\\(.)", r"\1", title[2:]) == name


def test_md_escape_leaves_ordinary_names_alone() -> None:
    from worker.skills import md

    for name in ("notes.txt", "field-notes.md", "report 2024 v2.pdf", "données.csv"):
        assert md.escape(name) == name
    assert md.escape("a<b>\n!") == "a\\<b\\> \\!"


def test_fence_outgrows_backticks_in_the_preview() -> None:
    preview = "before\n```\nnot the end\n`````\nstill inside ````` here\nafter"
    _, body = parse_front_matter(note_for(text_facts(line_count=6), preview, relpath="README.md"))
    lines = body.split("\n")
    opening = next(i for i, line in enumerate(lines) if line.startswith("```"))
    fence = re.match(r"`+", lines[opening])
    assert fence is not None and len(fence.group()) == 6 and lines[opening].endswith("markdown")
    # CommonMark: the block ends at the first line of only backticks at least as long as the opening.
    closing = re.compile(rf"`{{{len(fence.group())},}}\s*")
    close = next(i for i in range(opening + 1, len(lines)) if closing.fullmatch(lines[i]))
    assert "\n".join(lines[opening + 1 : close]) == preview


def test_truncated_content_says_so() -> None:
    by_lines = Excerpt("a\nb", 2048, 2048, 2, "lines")
    _, body = parse_front_matter(note_for(text_facts(line_count=100), "", content=by_lines))
    assert body.endswith("```\n\n*Truncated: the first 2 of 100 lines are shown.*\n")
    by_bytes = Excerpt("a" * 10, 262_144, 1_048_576, 1, "bytes")
    _, body = parse_front_matter(note_for(text_facts(size=1_048_576), "", content=by_bytes))
    assert "*Truncated: the first 262,144 of 1,048,576 bytes are shown.*" in body


def _note_of(tmp_path: Path, name: str, data: bytes, **kw: object) -> str:
    src = write(tmp_path, name, data)
    out = tmp_path / "notes" / f"{name}.obs.md"
    args: dict[str, object] = {"max_input_bytes": MAX, "preview_lines": 0, **kw}
    process_file(str(src), str(out), bucket="b", relpath=name, worker="w", **args)  # type: ignore[arg-type]
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("app.py", "python"),
        ("conf.yaml", "yaml"),
        ("Makefile", "makefile"),
        ("notes.txt", "text"),
        ("x.zzz", ""),
    ],
)
def test_the_content_fence_is_tagged_by_extension(tmp_path: Path, name: str, tag: str) -> None:
    note = _note_of(tmp_path, name, b"a = 1\nb = 2\n")
    assert f"## Content\n\n```{tag}\na = 1\nb = 2\n```\n" in note
    assert "## Preview" not in note and "Truncated" not in note


def test_content_is_capped_with_a_visible_marker(tmp_path: Path) -> None:
    from protocol.messages import NoteSettings

    data = b"".join(b"%07d\n" % i for i in range(131_072))  # 1 MiB
    note = _note_of(tmp_path, "big.txt", data, notes=NoteSettings())
    assert note.endswith("```\n\n*Truncated: the first 262,144 of 1,048,576 bytes are shown.*\n")
    body = note.split("## Content\n\n```text\n", 1)[1].split("\n```\n", 1)[0]
    assert body == data[: 256 * 1024].decode().removesuffix("\n")
    small = _note_of(tmp_path, "big.txt", data, notes=NoteSettings(content_max_bytes=16))
    assert "```text\n0000000\n0000001\n```\n\n*Truncated: the first 16 of 1,048,576 bytes" in small


def test_a_line_limit_cuts_the_content_and_says_so(tmp_path: Path) -> None:
    note = _note_of(tmp_path, "n.txt", b"one\ntwo\nthree\n", preview_lines=2)
    assert note.endswith("```text\none\ntwo\n```\n\n*Truncated: the first 2 of 3 lines are shown.*\n")
    unlimited = _note_of(tmp_path, "n.txt", b"x\n" * 5000, preview_lines=0)
    assert unlimited.count("\nx") == 5000 and "Truncated" not in unlimited


def test_a_zero_content_cap_leaves_no_content_section(tmp_path: Path) -> None:
    from protocol.messages import NoteSettings

    note = _note_of(tmp_path, "n.txt", b"secret\n", notes=NoteSettings(content_max_bytes=0))
    assert "## Content" not in note and "secret" not in note


def test_binary_and_empty_files_say_so_in_the_content_section(tmp_path: Path) -> None:
    binary = _note_of(tmp_path, "blob.dat", b"\x00\x01\x02" * 100)
    assert binary.endswith(
        "## Content\n\nBinary file (binary, `application/octet-stream`); contents not shown.\n"
    )
    assert _note_of(tmp_path, "empty.txt", b"").endswith("## Content\n\nEmpty file.\n")


def test_a_file_cannot_close_the_content_fence(tmp_path: Path) -> None:
    hostile = "x\n```\n# Injected heading\n~~~\n``````` \n  ````````````\nend\n"
    note = _note_of(tmp_path, "evil.md", hostile.encode())
    lines = note.split("\n")
    opening = lines.index(next(line for line in lines if line.startswith("`````````````markdown")))
    closing = re.compile(r" {0,3}`{13,}\s*")
    close = next(i for i in range(opening + 1, len(lines)) if closing.fullmatch(lines[i]))
    assert "\n".join(lines[opening + 1 : close]) == hostile.removesuffix("\n")


def test_write_atomic_creates_parents_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "note.md"
    write_atomic(target, "one")
    write_atomic(target, "twö")
    assert target.read_text(encoding="utf-8") == "twö"
    assert os.listdir(target.parent) == ["note.md"]


# -- the whole job -----------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_process_file_writes_the_note(tmp_path: Path) -> None:
    src = write(tmp_path, "hello.py", b"print('hi')\n")
    out = tmp_path / "notes" / "inbox" / "hello.py.md"
    before = _open_fds()
    facts = process_file(
        str(src),
        str(out),
        bucket="inbox",
        relpath="hello.py",
        worker="w-7",
        max_input_bytes=MAX,
        preview_lines=5,
    )
    assert _open_fds() == before
    assert facts.sha256 == hashlib.sha256(b"print('hi')\n").hexdigest()
    front, body = parse_front_matter(out.read_text(encoding="utf-8"))
    assert (front["kind"], front["worker"], front["source"]) == ("python", "w-7", str(src))
    assert (front["type"], front["skill"]) == ("open-buckets-note", "code")
    assert "```python\nprint('hi')\n```" in body


def test_process_file_closes_the_input_on_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(tmp_path, "a.txt", b"data")

    def broken_read(fd: int, n: int) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(detect.os, "read", broken_read)
    before = _open_fds()
    with pytest.raises(FileAccessError) as err:
        process_file(
            str(src),
            str(tmp_path / "a.md"),
            bucket="b",
            relpath="a.txt",
            worker="w",
            max_input_bytes=MAX,
            preview_lines=5,
        )
    assert err.value.code == "EIO"
    assert _open_fds() == before


def test_process_file_output_failure_is_a_system_error(tmp_path: Path) -> None:
    src = write(tmp_path, "a.txt", b"data")
    blocker = write(tmp_path, "not-a-dir", b"")
    with pytest.raises(JobError) as err:
        process_file(
            str(src),
            str(blocker / "a.md"),
            bucket="b",
            relpath="a.txt",
            worker="w",
            max_input_bytes=MAX,
            preview_lines=5,
        )
    assert err.value.category == "System" and err.value.code is not None
    assert err.value.retryable  # the disk said no: worth retrying once someone fixes it


def test_process_file_refusal_writes_no_note(tmp_path: Path) -> None:
    out = tmp_path / "x.md"
    with pytest.raises(FileAccessError):
        process_file(
            str(tmp_path), str(out), bucket="b", relpath="x", worker="w", max_input_bytes=MAX, preview_lines=5
        )
    assert not out.exists()


def test_a_file_that_is_no_longer_the_expected_version_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "v.txt", b"first")
    st = os.stat(path)
    version = (st.st_size, st.st_mtime_ns, st.st_ino)
    fd, _ = open_regular(str(path), MAX, version)
    os.close(fd)
    path.write_bytes(b"second, longer")
    with pytest.raises(FileAccessError) as err:
        open_regular(str(path), MAX, version)
    assert err.value.code == "ECHANGED" and not err.value.retryable


def test_a_jobs_leftover_temp_note_is_reused_not_left_behind(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.txt.obs.md"
    target.parent.mkdir()
    leftover = target.with_name(".a.txt.obs.md.job7.tmp")
    leftover.write_text("half a note from a killed worker")
    write_atomic(target, "the whole note\n", owner="7")
    assert target.read_text() == "the whole note\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt.obs.md"]


def test_the_note_links_its_bucket_context_tree() -> None:
    from worker.pipeline.note import context_link

    _, body = parse_front_matter(note_for(text_facts(), "x"))
    assert "In [[CONTEXT_TREE-inbox|inbox]]: `src/app.py`" in body
    assert context_link("a|b]]#c\nd") == "[[CONTEXT_TREE-a-b-c-d|a-b-c-d]]"
