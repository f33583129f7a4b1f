"""What kind of file this is: magic numbers for binary formats, names and extensions for text.

Pure tables and lookups; `detect` decides *whether* a file is text and calls in here to name it.
`file_type` is a short lowercase name ("png", "python", "text", "binary"), `mime` a MIME type, and
`fence_language` the tag for a markdown code block of the file's text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    """A file type's short name and MIME type."""

    file_type: str
    mime: str


TEXT = Kind("text", "text/plain")
BINARY = Kind("binary", "application/octet-stream")

#: (offset, signature, kind), first match wins; signatures long enough not to occur in plain text.
_MAGIC: list[tuple[int, bytes, Kind]] = [
    (0, b"\x89PNG\r\n\x1a\n", Kind("png", "image/png")),
    (0, b"\xff\xd8\xff", Kind("jpeg", "image/jpeg")),
    (0, b"GIF87a", Kind("gif", "image/gif")),
    (0, b"GIF89a", Kind("gif", "image/gif")),
    (0, b"%PDF-", Kind("pdf", "application/pdf")),
    (0, b"PK\x03\x04", Kind("zip", "application/zip")),
    (0, b"PK\x05\x06", Kind("zip", "application/zip")),  # empty archive
    (0, b"PK\x07\x08", Kind("zip", "application/zip")),  # spanned archive
    (0, b"\x1f\x8b\x08", Kind("gzip", "application/gzip")),
    (0, b"\xfd7zXZ\x00", Kind("xz", "application/x-xz")),
    (0, b"7z\xbc\xaf\x27\x1c", Kind("7z", "application/x-7z-compressed")),
    (0, b"\x28\xb5\x2f\xfd", Kind("zstd", "application/zstd")),
    (0, b"Rar!\x1a\x07", Kind("rar", "application/vnd.rar")),
    (257, b"ustar", Kind("tar", "application/x-tar")),
    (0, b"!<arch>\ndebian", Kind("deb", "application/vnd.debian.binary-package")),
    (0, b"\x7fELF", Kind("elf", "application/x-executable")),
    (0, b"\xfe\xed\xfa\xce", Kind("mach-o", "application/x-mach-binary")),
    (0, b"\xfe\xed\xfa\xcf", Kind("mach-o", "application/x-mach-binary")),
    (0, b"\xce\xfa\xed\xfe", Kind("mach-o", "application/x-mach-binary")),
    (0, b"\xcf\xfa\xed\xfe", Kind("mach-o", "application/x-mach-binary")),
    (0, b"\x00asm", Kind("wasm", "application/wasm")),
    (0, b"SQLite format 3\x00", Kind("sqlite", "application/vnd.sqlite3")),
    (0, b"II*\x00", Kind("tiff", "image/tiff")),
    (0, b"MM\x00*", Kind("tiff", "image/tiff")),
    (0, b"\x00\x00\x01\x00", Kind("ico", "image/vnd.microsoft.icon")),
    (0, b"8BPS\x00\x01", Kind("psd", "image/vnd.adobe.photoshop")),
    (0, b"ID3\x03", Kind("mp3", "audio/mpeg")),
    (0, b"ID3\x04", Kind("mp3", "audio/mpeg")),
    (0, b"OggS\x00", Kind("ogg", "audio/ogg")),
    (0, b"fLaC", Kind("flac", "audio/flac")),
    (0, b"MThd\x00\x00\x00\x06", Kind("midi", "audio/midi")),
    (0, b"\x1a\x45\xdf\xa3", Kind("matroska", "video/x-matroska")),
    (0, b"wOFF", Kind("woff", "font/woff")),
    (0, b"wOF2", Kind("woff2", "font/woff2")),
    (0, b"OTTO\x00", Kind("otf", "font/otf")),
]

_RIFF = {
    b"WEBP": Kind("webp", "image/webp"),
    b"WAVE": Kind("wav", "audio/wav"),
    b"AVI ": Kind("avi", "video/x-msvideo"),
}

#: ISO base media ("....ftyp<brand>") brands worth naming; the rest are "mp4".
_FTYP = {
    b"qt  ": Kind("mov", "video/quicktime"),
    b"heic": Kind("heic", "image/heic"),
    b"heix": Kind("heic", "image/heic"),
    b"avif": Kind("avif", "image/avif"),
    b"M4A ": Kind("m4a", "audio/mp4"),
}

#: Zip containers that are better known by their extension.
_ZIP_BY_EXT = {
    "docx": Kind("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    "xlsx": Kind("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "pptx": Kind("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    "odt": Kind("odt", "application/vnd.oasis.opendocument.text"),
    "ods": Kind("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    "epub": Kind("epub", "application/epub+zip"),
    "jar": Kind("jar", "application/java-archive"),
    "apk": Kind("apk", "application/vnd.android.package-archive"),
    "whl": Kind("wheel", "application/zip"),
}

# extension → (file_type, mime, fence language)
_TEXT_BY_EXT: dict[str, tuple[str, str, str]] = {
    "txt": ("text", "text/plain", "text"),
    "text": ("text", "text/plain", "text"),
    "log": ("log", "text/plain", "log"),
    "md": ("markdown", "text/markdown", "markdown"),
    "markdown": ("markdown", "text/markdown", "markdown"),
    "rst": ("rst", "text/x-rst", "rst"),
    "py": ("python", "text/x-python", "python"),
    "pyi": ("python", "text/x-python", "python"),
    "json": ("json", "application/json", "json"),
    "jsonl": ("jsonl", "application/jsonl", "json"),
    "ndjson": ("jsonl", "application/jsonl", "json"),
    "csv": ("csv", "text/csv", "csv"),
    "tsv": ("tsv", "text/tab-separated-values", "tsv"),
    "toml": ("toml", "application/toml", "toml"),
    "yaml": ("yaml", "application/yaml", "yaml"),
    "yml": ("yaml", "application/yaml", "yaml"),
    "ini": ("ini", "text/plain", "ini"),
    "cfg": ("ini", "text/plain", "ini"),
    "conf": ("config", "text/plain", "ini"),
    "html": ("html", "text/html", "html"),
    "htm": ("html", "text/html", "html"),
    "xml": ("xml", "application/xml", "xml"),
    "svg": ("svg", "image/svg+xml", "xml"),
    "css": ("css", "text/css", "css"),
    "js": ("javascript", "text/javascript", "javascript"),
    "mjs": ("javascript", "text/javascript", "javascript"),
    "cjs": ("javascript", "text/javascript", "javascript"),
    "ts": ("typescript", "text/x-typescript", "typescript"),
    "tsx": ("typescript", "text/x-typescript", "tsx"),
    "jsx": ("javascript", "text/javascript", "jsx"),
    "c": ("c", "text/x-c", "c"),
    "h": ("c", "text/x-c", "c"),
    "cc": ("cpp", "text/x-c++", "cpp"),
    "cpp": ("cpp", "text/x-c++", "cpp"),
    "cxx": ("cpp", "text/x-c++", "cpp"),
    "hpp": ("cpp", "text/x-c++", "cpp"),
    "cs": ("csharp", "text/x-csharp", "csharp"),
    "rs": ("rust", "text/x-rust", "rust"),
    "go": ("go", "text/x-go", "go"),
    "java": ("java", "text/x-java", "java"),
    "kt": ("kotlin", "text/x-kotlin", "kotlin"),
    "swift": ("swift", "text/x-swift", "swift"),
    "rb": ("ruby", "text/x-ruby", "ruby"),
    "php": ("php", "application/x-httpd-php", "php"),
    "pl": ("perl", "text/x-perl", "perl"),
    "lua": ("lua", "text/x-lua", "lua"),
    "r": ("r", "text/x-r", "r"),
    "sql": ("sql", "application/sql", "sql"),
    "sh": ("shell", "application/x-sh", "sh"),
    "bash": ("shell", "application/x-sh", "bash"),
    "zsh": ("shell", "application/x-sh", "zsh"),
    "ps1": ("powershell", "text/plain", "powershell"),
    "tex": ("latex", "application/x-tex", "latex"),
    "diff": ("diff", "text/x-diff", "diff"),
    "patch": ("diff", "text/x-diff", "diff"),
}

_TEXT_BY_NAME: dict[str, tuple[str, str, str]] = {
    "makefile": ("makefile", "text/x-makefile", "makefile"),
    "dockerfile": ("dockerfile", "text/plain", "dockerfile"),
}

#: interpreter named on a "#!" line → extension whose entry describes the script
_SHEBANG = {
    "python": "py",
    "sh": "sh",
    "bash": "bash",
    "zsh": "zsh",
    "node": "js",
    "perl": "pl",
    "ruby": "rb",
    "lua": "lua",
    "php": "php",
}


def extension(name: str) -> str:
    """The lowercase extension of a file name without the dot ("" if none; dotfiles have none)."""
    return os.path.splitext(os.path.basename(name))[1][1:].lower()


def sniff_binary(head: bytes, name: str) -> Kind | None:
    """The binary format `head` (the file's first bytes) announces, or None if no known magic matches."""
    for offset, magic, kind in _MAGIC:
        if head.startswith(magic, offset):
            if kind.file_type == "zip":
                return _ZIP_BY_EXT.get(extension(name), kind)
            return kind
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return Kind("bzip2", "application/x-bzip2")  # "BZh" + level + a block or end-of-stream marker
    if head.startswith(b"RIFF") and len(head) >= 12:
        return _RIFF.get(head[8:12], Kind("riff", "application/octet-stream"))
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], Kind("mp4", "video/mp4"))
    if head.startswith(b"\xca\xfe\xba\xbe") and len(head) >= 8:
        # Shared by Java classes and Mach-O fat binaries: a class has its version (major >= 45) here, a fat
        # binary its (small) architecture count.
        if int.from_bytes(head[4:8], "big") >= 45:
            return Kind("java-class", "application/java-vm")
        return Kind("mach-o", "application/x-mach-binary")
    if head.startswith(b"MZ") and b"\x00" in head:
        # "MZ" alone is too short a signature to trust on text; real executables are full of NULs.
        return _pe_or_dos(head)
    if extension(name) == "pyc" and head[2:4] == b"\r\n":
        return Kind("pyc", "application/x-python-code")
    return None


def _pe_or_dos(head: bytes) -> Kind:
    pe_offset = int.from_bytes(head[0x3C:0x40], "little") if len(head) >= 0x40 else -1
    if pe_offset >= 0 and head.startswith(b"PE\x00\x00", pe_offset):
        return Kind("pe", "application/vnd.microsoft.portable-executable")
    return Kind("msdos-exe", "application/x-dosexec")


def text_kind(name: str, first_line: str = "") -> Kind:
    """Name a text file by its name or extension, else by a "#!" line, else plain "text"."""
    entry = _text_entry(name, first_line)
    return Kind(entry[0], entry[1]) if entry else TEXT


def fence_language(name: str, first_line: str = "") -> str:
    """The markdown code-fence language for a text file ("" when unknown)."""
    entry = _text_entry(name, first_line)
    return entry[2] if entry else ""


def _text_entry(name: str, first_line: str) -> tuple[str, str, str] | None:
    base = os.path.basename(name).lower()
    if base in _TEXT_BY_NAME:
        return _TEXT_BY_NAME[base]
    ext = extension(name)
    if ext in _TEXT_BY_EXT:
        return _TEXT_BY_EXT[ext]
    if first_line.startswith("#!"):
        return _TEXT_BY_EXT.get(_SHEBANG.get(_interpreter(first_line), ""))
    return None


def _interpreter(shebang: str) -> str:
    # "#!/usr/bin/env -S python3.11 -u" → "python"; "#!/bin/sh" → "sh"
    words = shebang[2:].split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    return os.path.basename(words[0]).rstrip("0123456789.") if words else ""
