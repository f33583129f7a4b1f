"""Listing ZIP and TAR archives without extracting anything.

A ZIP is listed from its central directory: only declared sizes are read, nothing is decompressed. A TAR
is listed from its headers, which for a compressed TAR means decompressing the stream: those bytes are
metered and the walk stops at the limit. What an archive declares is checked against `SkillLimits` before
it is believed; one that looks like a bomb is refused with `FileContentError` (code "EBOMB"), a corrupt or
truncated one with code "ECORRUPT". Nested archives are counted, never opened. Entry names are untrusted
and reach the note only through `worker.skills.md`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from worker.pipeline.errors import FileAccessError, FileContentError, errno_name
from worker.skills import md
from worker.skills.base import FieldValue, Section, SkillInput, SkillLimits, SkillOutput

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Below this unpacked size an entry's ratio is not checked: a small file of zeros packs 1000:1 and is
#: harmless; the ratio only matters when the unpacked size is big enough to hurt.
_RATIO_MIN_BYTES = 1024 * 1024
_NESTED = (
    *(".zip", ".jar", ".war", ".whl", ".apk", ".tar", ".tgz", ".tbz2", ".txz", ".gz", ".bz2", ".xz"),
    *(".zst", ".lz", ".lzma", ".7z", ".rar", ".cab", ".iso"),
)
_DRIVE = re.compile(r"[A-Za-z]:")
_COMPRESSION = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
#: What the stdlib raises on a corrupt or truncated archive (OSError covers gzip.BadGzipFile and bz2).
_CORRUPT = (
    *(zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError),
    *(OSError, struct.error, ValueError, OverflowError),
)

#: The archive's bytes: in memory, or read through the descriptor.
_File = io.BytesIO | io.BufferedReader

_EOCD = struct.Struct("<4s4H2LH")  # ZIP end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")


def archive(inp: SkillInput) -> SkillOutput:
    """List a ZIP or a TAR (plain, gzip, bzip2 or xz) archive: counts, sizes and the first entries."""
    with _reader(inp) as f:
        head = f.read(262)
        # A tar is named by its magic first: its first member may be called "PK…", and a tar ending with a
        # zip member has that zip's end record near its end, which zipfile.is_zipfile takes for its own.
        compression = next((name for sig, name in _COMPRESSION if head.startswith(sig)), None)
        is_tar = compression is not None or head[257:262] == b"ustar"
        try:
            if not is_tar and (head.startswith(b"PK") or zipfile.is_zipfile(f)):  # or self-extracting
                return _zip(f, inp.limits)
            return _tar(f, compression, inp.limits)
        except _CORRUPT as exc:
            message = md.inline(str(exc) or type(exc).__name__)
            raise FileContentError(f"corrupt or truncated archive: {message}", code="ECORRUPT") from exc


@dataclass
class _Listing:
    """Counts and the first `limit` lines of an archive's entries, fed one entry at a time."""

    limit: int
    entries: int = 0
    files: int = 0
    directories: int = 0
    links: int = 0
    unpacked: int = 0
    nested: int = 0
    unsafe: int = 0
    lines: list[str] = field(default_factory=list)

    def add(self, name: str, size: int, *, is_dir: bool = False, link: str | None = None) -> None:
        self.entries += 1
        self.unpacked += size
        parts = name.replace("\\", "/").split("/")
        # Listing only, but whoever extracts this by hand should know it may write outside its folder.
        if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
            self.unsafe += 1
        if is_dir:
            self.directories += 1
            line = md.code(name)
        elif link is not None:  # "" when the target is not in the header (a zip keeps it as data)
            self.links += 1
            line = f"{md.code(name)} → {md.code(link)}" if link else f"{md.code(name)} (link)"
        else:
            self.files += 1
            self.nested += name.lower().endswith(_NESTED)
            line = f"{md.code(name)} ({_human(size)})"
        if len(self.lines) < self.limit:
            self.lines.append(line)

    def output(self, kind: str, first: dict[str, FieldValue], last: dict[str, FieldValue]) -> SkillOutput:
        fields: dict[str, FieldValue] = {
            "archive": kind,
            **first,
            "entries": self.entries,
            "files": self.files,
            "directories": self.directories,
            "links": self.links,
            "unpacked_bytes": self.unpacked,
            "nested_archives": self.nested,
            "unsafe_paths": self.unsafe,
            **last,
        }
        contents = md.bullets(self.lines, self.entries, self.limit) or ["- (empty)"]
        return SkillOutput(fields=fields, sections=[Section("Contents", contents)], tags=[f"archive/{kind}"])


def _zip(f: _File, limits: SkillLimits) -> SkillOutput:
    # zipfile builds one object per entry before we could count them: trust the end record's count
    # first. A lying count is still caught below, after parsing (within the worker's memory limit).
    declared = _declared_zip_entries(f)
    if declared is not None and declared > limits.max_archive_entries:
        raise _bomb("zip", f"{declared:,} entries, the limit is {limits.max_archive_entries:,}")
    with zipfile.ZipFile(f) as zf:  # a passed-in file is not closed by ZipFile
        infos = zf.infolist()
    if len(infos) > limits.max_archive_entries:
        raise _bomb("zip", f"{len(infos):,} entries, the limit is {limits.max_archive_entries:,}")
    total = sum(info.file_size for info in infos)
    if total > limits.max_archive_unpacked_bytes:
        limit = _human(limits.max_archive_unpacked_bytes)
        raise _bomb("zip", f"declared {_human(total)} unpacked, the limit is {limit}")
    for info in infos:
        if (
            info.file_size > _RATIO_MIN_BYTES
            and info.file_size > limits.max_archive_ratio * info.compress_size
        ):
            ratio = info.file_size / max(info.compress_size, 1)
            raise _bomb(
                "zip",
                f"{md.code(info.filename, 80)} declares {_human(info.file_size)} packed into "
                f"{_human(info.compress_size)} (ratio {ratio:,.0f}), the limit is {limits.max_archive_ratio}",
            )
    listing = _Listing(limits.max_list_items)
    for info in infos:
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000  # a unix symlink's mode
        listing.add(info.filename, info.file_size, is_dir=info.is_dir(), link="" if is_link else None)
    encrypted = any(info.flag_bits & 0x1 for info in infos)
    return listing.output("zip", {}, {"encrypted": encrypted})


def _declared_zip_entries(f: _File) -> int | None:
    """The entry count a ZIP's end record declares, or None when there is none to read (zipfile will
    then say what is wrong)."""
    size = f.seek(0, io.SEEK_END)
    start = max(0, size - _EOCD.size - 0xFFFF)  # the record is followed by a comment of up to 64 KiB
    f.seek(start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    count: int = _EOCD.unpack_from(tail, at)[4]
    if count == 0xFFFF and at >= _EOCD64_LOCATOR.size:  # ZIP64: the real count is in another record
        sig, _, offset, _ = _EOCD64_LOCATOR.unpack_from(tail, at - _EOCD64_LOCATOR.size)
        if sig == b"PK\x06\x07":
            f.seek(offset)
            record = f.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record.startswith(b"PK\x06\x06"):
                count = _EOCD64.unpack(record)[7]
    return count


def _tar(f: _File, compression: str | None, limits: SkillLimits) -> SkillOutput:
    f.seek(0)
    # Streaming mode: headers are read in order and member data is skipped by reading through it
    # (metered), never seeked over and never extracted. A compressed stream that is not a tar inside is
    # refused as corrupt: files only come here by a tarball's name or a rule that says so.
    with (
        _decompressed(f, compression) as raw,
        tarfile.open(
            fileobj=_Metered(raw, limits.max_archive_unpacked_bytes), mode="r|", tarinfo=_GuardedTarInfo
        ) as tf,
    ):
        listing = _Listing(limits.max_list_items)
        for member in tf:
            link = member.linkname if member.issym() or member.islnk() else None
            listing.add(member.name, member.size, is_dir=member.isdir(), link=link)
            if listing.entries > limits.max_archive_entries:
                raise _bomb("tar", f"more than the limit of {limits.max_archive_entries:,} entries")
            if listing.unpacked > limits.max_archive_unpacked_bytes:
                limit = _human(limits.max_archive_unpacked_bytes)
                raise _bomb("tar", f"declared {_human(listing.unpacked)} unpacked, the limit is {limit}")
    return listing.output("tar", {"compression": compression}, {})


#: Longest long-name or pax header taken from a tar: tarfile reads them whole into memory, and Python
#: before 3.11.10 parses pax headers in quadratic time (CVE-2024-6232): a 1 MiB one took ~1,000 s here.
_MAX_META_BYTES = 16 * 1024
_META_TYPES = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE}
    | {tarfile.SOLARIS_XHDTYPE}
)


class _GuardedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses oversized long-name and pax headers before tarfile reads them."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _META_TYPES and self.size > _MAX_META_BYTES:
            most = _human(_MAX_META_BYTES)
            raise _bomb("tar", f"a {_human(self.size)} name or pax header (at most {most})")
        return super()._proc_member(tf)  # type: ignore[misc]


def _decompressed(f: _File, compression: str | None) -> io.BufferedIOBase:
    """`f` decompressed on the fly (these readers leave a passed-in file open when closed)."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if compression == "bzip2":
        return bz2.BZ2File(f)
    if compression == "xz":
        return lzma.LZMAFile(f)
    return f


class _Metered(io.BufferedIOBase):
    """A reader that refuses (EBOMB) once more than `limit` bytes have been read through it."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        # Never more than the limit allows (+1 to notice passing it) in one call, so memory stays bounded.
        room = self._limit - self._consumed + 1
        data = self._inner.read(room if size is None or size < 0 else min(size, room))
        self._consumed += len(data)
        if self._consumed > self._limit:
            raise _bomb("tar", f"the stream decompresses past the limit of {_human(self._limit)}")
        return data


class _PreadFile(io.RawIOBase):
    """A seekable, read-only view of a descriptor through os.pread: it keeps its own position (the
    descriptor's offset is never used or moved) and closing it leaves the descriptor open."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = os.pread(self._fd, len(view), self._pos)
        except OSError as exc:  # the file could not be read: not the archive's fault
            raise FileAccessError(f"cannot read the archive: {exc.strerror}", code=errno_name(exc)) from exc
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += os.fstat(self._fd).st_size
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos


def _reader(inp: SkillInput) -> _File:
    if inp.content is not None:
        return io.BytesIO(inp.content)
    return io.BufferedReader(_PreadFile(inp.fd), 1 << 16)


def _bomb(kind: str, why: str) -> FileContentError:
    return FileContentError(f"suspected {kind} bomb: {why}", code="EBOMB")


def _human(size: int) -> str:
    """A byte count for people: "512 B", "1.5 KiB", "5.0 GiB"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{size} B" if unit == 0 else f"{value:.1f} {units[unit]}"
