"""The archive and image skills: listings, bomb and corruption refusals, and header-only image sizes.

Every input is generated here, in tmp_path; skills are run both on `content` (in memory) and on `fd`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import random
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.messages import FileFacts
from worker.pipeline.errors import FileContentError
from worker.skills.archive import archive
from worker.skills.base import SkillInput, SkillLimits, SkillOutput
from worker.skills.image import image

pytestmark = pytest.mark.timeout(30)

Skill = Callable[[SkillInput], SkillOutput]


def noise(size: int, seed: int = 0) -> bytes:
    """Random-looking bytes that are the same every run (so no run can stumble on a magic number)."""
    return random.Random(seed).randbytes(size)


def run(
    skill: Skill,
    tmp_path: Path,
    data: bytes,
    *,
    name: str = "input.bin",
    file_type: str = "binary",
    in_memory: bool = False,
    limits: SkillLimits | None = None,
) -> SkillOutput:
    """Write `data` to a file, open it read-only and run `skill` on it (content handed over or not)."""
    path = tmp_path / name
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        facts = FileFacts(
            size=len(data),
            sha256="0" * 64,
            file_type=file_type,
            mime="application/octet-stream",
            is_text=False,
        )
        inp = SkillInput(
            name=name,
            relpath=name,
            facts=facts,
            content=data if in_memory else None,
            fd=fd,
            limits=limits or SkillLimits(),
        )
        return skill(inp)
    finally:
        os.close(fd)


def refused(skill: Skill, tmp_path: Path, data: bytes, **kwargs: object) -> FileContentError:
    with pytest.raises(FileContentError) as info:
        run(skill, tmp_path, data, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- archives ----------------------------------------------------------------------------------------


def make_zip(files: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, b"target")
    return buf.getvalue()


def make_tar(mode: str, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for member in members:
            payload = (data or {}).get(member.name)
            if payload is not None:
                member.size = len(payload)
            tf.addfile(member, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("in_memory", [False, True])
def test_zip_is_listed_with_counts(tmp_path: Path, in_memory: bool) -> None:
    files = {
        "docs/": b"",
        "docs/readme.txt": b"hello" * 300,
        "inner.zip": b"PK",
        "backup.tar.gz": b"x",
        "../escape.txt": b"x",
        "/etc/abs.txt": b"x",
        "weird`name|\n.txt": b"x",
    }
    out = run(archive, tmp_path, make_zip(files, symlinks=("link",)), name="a.zip", in_memory=in_memory)
    assert list(out.fields)[:2] == ["archive", "entries"]
    assert out.fields["archive"] == "zip"
    assert out.fields["entries"] == 8
    assert out.fields["directories"] == 1
    assert out.fields["files"] == 6
    assert out.fields["links"] == 1
    assert out.fields["nested_archives"] == 2
    assert out.fields["unsafe_paths"] == 2
    assert out.fields["unpacked_bytes"] == 1500 + 2 + 1 + 1 + 1 + 1 + 6
    assert out.fields["encrypted"] is False
    assert out.tags == ["archive/zip"]
    [section] = out.sections
    assert section.title == "Contents"
    assert "- `docs/readme.txt` (1.5 KiB)" in section.lines
    assert "- `link` (link)" in section.lines
    assert all("\n" not in line for line in section.lines)  # the hostile name stays on one line
    assert any("weird" in line and line.count("``") >= 2 for line in section.lines)


def test_zip_encrypted_flag(tmp_path: Path) -> None:
    data = bytearray(make_zip({"secret.txt": b"x"}))
    at = data.find(b"PK\x01\x02")  # the central directory entry's general purpose flags
    data[at + 8] |= 0x01
    out = run(archive, tmp_path, bytes(data), name="e.zip")
    assert out.fields["encrypted"] is True


@pytest.mark.parametrize(
    ("mode", "compression"), [("w", None), ("w:gz", "gzip"), ("w:bz2", "bzip2"), ("w:xz", "xz")]
)
@pytest.mark.parametrize("in_memory", [False, True])
def test_tar_is_listed(tmp_path: Path, mode: str, compression: str | None, in_memory: bool) -> None:
    members = [
        tar_member("pkg", tarfile.DIRTYPE),
        tar_member("pkg/data.bin"),
        tar_member("pkg/nested.zip"),
        tar_member("pkg/current", tarfile.SYMTYPE, "/etc/passwd"),
        tar_member("../up.txt"),
    ]
    data = make_tar(mode, members, {"pkg/data.bin": b"\0" * 4096, "pkg/nested.zip": b"PK"})
    out = run(archive, tmp_path, data, name="a.tar", in_memory=in_memory)
    assert out.fields["archive"] == "tar"
    assert out.fields["compression"] == compression
    assert (out.fields["entries"], out.fields["files"], out.fields["directories"]) == (5, 3, 1)
    assert (out.fields["links"], out.fields["nested_archives"], out.fields["unsafe_paths"]) == (1, 1, 1)
    assert out.fields["unpacked_bytes"] == 4096 + 2
    assert out.tags == ["archive/tar"]
    lines = out.sections[0].lines
    assert "- `pkg/data.bin` (4.0 KiB)" in lines
    assert "- `pkg/current` → `/etc/passwd`" in lines


def test_compressed_file_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    err = refused(archive, tmp_path, gzip.compress(b"just some text\n" * 100), name="notes.tar.gz")
    assert err.code == "ECORRUPT"
    assert err.message.startswith("corrupt or truncated archive: ")


def test_long_listing_is_cut(tmp_path: Path) -> None:
    data = make_zip({f"f{i:02}.txt": b"x" for i in range(30)})
    out = run(archive, tmp_path, data, name="many.zip", limits=SkillLimits(max_list_items=5))
    lines = out.sections[0].lines
    assert len(lines) == 6
    assert lines[0] == "- `f00.txt` (1 B)"
    assert lines[-1] == "- … and 25 more"


@pytest.mark.parametrize("in_memory", [False, True])
def test_zip_with_too_many_entries_is_refused(tmp_path: Path, in_memory: bool) -> None:
    data = make_zip({f"f{i}.txt": b"x" for i in range(20)})
    err = refused(archive, tmp_path, data, in_memory=in_memory, limits=SkillLimits(max_archive_entries=10))
    assert err.code == "EBOMB"
    assert "20 entries" in err.message


def test_zip_lying_about_its_entry_count_is_still_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip({f"f{i}.txt": b"x" for i in range(20)}))
    at = data.rfind(b"PK\x05\x06")  # the end record claims one entry; the directory holds twenty
    data[at + 8 : at + 12] = struct.pack("<HH", 1, 1)
    err = refused(archive, tmp_path, bytes(data), limits=SkillLimits(max_archive_entries=10))
    assert err.code == "EBOMB"
    assert err.message == "suspected zip bomb: 20 entries, the limit is 10"


def test_tar_whose_first_member_starts_with_pk_is_a_tar(tmp_path: Path) -> None:
    out = run(archive, tmp_path, make_tar("w", [tar_member("PKG-INFO")], {"PKG-INFO": b"Name: x\n"}))
    assert out.fields["archive"] == "tar"
    assert out.sections[0].lines == ["- `PKG-INFO` (8 B)"]


def test_zip_declaring_too_much_is_refused(tmp_path: Path) -> None:
    data = make_zip({"a.bin": noise(3000)})
    err = refused(archive, tmp_path, data, limits=SkillLimits(max_archive_unpacked_bytes=2048))
    assert err.code == "EBOMB"
    assert err.message == "suspected zip bomb: declared 2.9 KiB unpacked, the limit is 2.0 KiB"


def test_zip_of_zeros_is_refused_by_ratio(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("zeros.bin", b"\0" * 50_000_000, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    err = refused(archive, tmp_path, buf.getvalue(), name="bomb.zip")
    assert err.code == "EBOMB"
    assert "`zeros.bin` declares 47.7 MiB" in err.message
    assert "the limit is 200" in err.message


def test_tar_gz_declaring_too_much_is_refused(tmp_path: Path) -> None:
    data = make_tar("w:gz", [tar_member("zeros.bin")], {"zeros.bin": b"\0" * (3 * 1024 * 1024)})
    err = refused(archive, tmp_path, data, limits=SkillLimits(max_archive_unpacked_bytes=1024 * 1024))
    assert err.code == "EBOMB"
    assert "declared 3.0 MiB unpacked" in err.message


def test_tar_gz_stream_past_the_limit_is_refused(tmp_path: Path) -> None:
    # Empty members declare nothing, but each header is 512 decompressed bytes the walk must read.
    data = make_tar("w:gz", [tar_member(f"empty{i}") for i in range(3000)])
    err = refused(archive, tmp_path, data, limits=SkillLimits(max_archive_unpacked_bytes=1024 * 1024))
    assert err.code == "EBOMB"
    assert err.message == "suspected tar bomb: the stream decompresses past the limit of 1.0 MiB"


def test_tar_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    data = make_tar("w", [tar_member(f"f{i}") for i in range(30)])
    err = refused(archive, tmp_path, data, limits=SkillLimits(max_archive_entries=10))
    assert err.code == "EBOMB"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(make_zip({"a.txt": noise(5000)})[:2500], id="truncated-zip"),
        pytest.param(b"PK\x03\x04" + noise(2000), id="garbage-zip"),
        pytest.param(
            make_tar("w:gz", [tar_member("r.bin")], {"r.bin": noise(50_000)})[:20_000], id="cut-tgz"
        ),
        pytest.param(b"\x1f\x8b\x08\x00" + noise(2000), id="garbage-gzip"),
        pytest.param(bz2.compress(b"x" * 5000)[:-10], id="truncated-bz2"),
        pytest.param(b"\xfd7zXZ\x00" + noise(500), id="garbage-xz"),
        pytest.param(make_tar("w", [tar_member("r.bin")], {"r.bin": noise(5000)})[:3000], id="cut-tar"),
        pytest.param(noise(1000), id="garbage"),
        pytest.param(b"", id="empty"),
    ],
)
def test_corrupt_archives_are_refused(tmp_path: Path, data: bytes) -> None:
    err = refused(archive, tmp_path, data)
    assert err.code == "ECORRUPT"
    assert err.message.startswith("corrupt or truncated archive: ")


# --- images ------------------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )


def jpeg(width: int, height: int, *, padding: int = 0) -> bytes:
    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body

    out = b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    for _ in range(padding):  # big APP2 (ICC-like) segments push the frame header past the first 64 KiB
        out += segment(0xE2, b"\x00" * 65000)
    out += segment(0xC4, b"\x00" * 20)  # a Huffman table (0xC4) is not a frame header
    out += segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return out + segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00") + b"\x00" * 10 + b"\xff\xd9"


def tiff(order: str, width: int, height: int, *, gap: int = 0) -> bytes:
    # The IFD comes after `gap` bytes of (pretend) image data, as some writers put it at the end.
    ifd_at = 8 + gap
    entries = [
        (256, 3, 1, struct.pack(order + "HH", width, 0)),
        (257, 4, 1, struct.pack(order + "I", height)),
    ]
    entries.append((258, 3, 3, struct.pack(order + "I", ifd_at + 2 + 12 * 4 + 4)))  # BitsPerSample at offset
    entries.append((262, 3, 1, struct.pack(order + "HH", 2, 0)))
    ifd = struct.pack(order + "H", len(entries))
    ifd += b"".join(struct.pack(order + "HHI", tag, kind, n) + raw for tag, kind, n, raw in entries)
    ifd += struct.pack(order + "I", 0) + struct.pack(order + "HHH", 8, 8, 8)
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    return magic + struct.pack(order + "I", ifd_at) + b"\x00" * gap + ifd


def webp(chunk: bytes, body: bytes) -> bytes:
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


BMP = (
    b"BM"
    + struct.pack("<IHHI", 54, 0, 0, 54)
    + struct.pack("<IiiHHIIiiII", 40, 100, -50, 1, 24, 0, 0, 2835, 2835, 0, 0)
)
GIF = b"GIF89a" + struct.pack("<HH", 320, 200) + b"\x00\x00\x00" + b";"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            png(640, 480),
            {"format": "png", "width": 640, "height": 480, "bit_depth": 8, "color_type": "rgba"},
            id="png",
        ),
        pytest.param(GIF, {"format": "gif", "width": 320, "height": 200}, id="gif"),
        pytest.param(
            jpeg(1024, 768), {"format": "jpeg", "width": 1024, "height": 768, "bit_depth": 8}, id="jpeg"
        ),
        pytest.param(
            jpeg(33, 44, padding=2), {"width": 33, "height": 44, "color_type": "ycbcr"}, id="jpeg-far"
        ),
        pytest.param(BMP, {"format": "bmp", "width": 100, "height": 50, "bit_depth": 24}, id="bmp"),
        pytest.param(
            webp(
                b"VP8X", bytes([0x10]) + b"\0\0\0" + (799).to_bytes(3, "little") + (599).to_bytes(3, "little")
            ),
            {"format": "webp", "width": 800, "height": 600, "alpha": True, "animated": False},
            id="webp-vp8x",
        ),
        pytest.param(
            webp(b"VP8L", b"\x2f" + struct.pack("<I", 299 | 149 << 14)),
            {"width": 300, "height": 150, "alpha": False},
            id="webp-vp8l",
        ),
        pytest.param(
            webp(b"VP8 ", b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", 64, 32)),
            {"width": 64, "height": 32},
            id="webp-vp8",
        ),
        pytest.param(
            tiff("<", 300, 200), {"format": "tiff", "width": 300, "height": 200, "bit_depth": 8}, id="tiff-ii"
        ),
        pytest.param(
            tiff(">", 7, 9, gap=70_000), {"width": 7, "height": 9, "color_type": "rgb"}, id="tiff-mm-far"
        ),
    ],
)
@pytest.mark.parametrize("in_memory", [False, True])
def test_image_size_from_header(
    tmp_path: Path, data: bytes, expected: dict[str, object], in_memory: bool
) -> None:
    out = run(image, tmp_path, data, file_type="image", in_memory=in_memory)
    assert out.fields["width"] is not None
    assert {key: out.fields.get(key) for key in expected} == expected
    assert out.tags == [f"image/{out.fields['format']}"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png(640, 480)[:20], id="png-cut"),
        pytest.param(GIF[:8], id="gif-cut"),
        pytest.param(jpeg(10, 10)[:30], id="jpeg-cut"),
        pytest.param(b"\xff\xd8" + b"\xff" * 100_000, id="jpeg-fill-forever"),
        pytest.param(b"\xff\xd8" + b"\xff\xe0\x00\x02" * 20_000, id="jpeg-empty-segments"),
        pytest.param(b"\xff\xd8\xff\xe0\xff\xff" + b"\x00" * 100, id="jpeg-length-past-end"),
        pytest.param(BMP[:20], id="bmp-cut"),
        pytest.param(b"BM" + b"\x00" * 60, id="bmp-bad-dib"),
        pytest.param(webp(b"VP8 ", b"\x00" * 10), id="webp-no-start-code"),
        pytest.param(b"II*\x00\xf0\xff\xff\xff", id="tiff-ifd-past-end"),
        pytest.param(b"MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 20, id="tiff-too-many-tags"),
        pytest.param(noise(4096), id="garbage"),
        pytest.param(b"", id="empty"),
    ],
)
@pytest.mark.parametrize("in_memory", [False, True])
def test_unreadable_image_header_is_not_an_error(tmp_path: Path, data: bytes, in_memory: bool) -> None:
    out = run(image, tmp_path, data, file_type="image", in_memory=in_memory)
    assert out.fields["width"] is None
    assert out.fields["height"] is None
    assert out.fields["format"] in ("png", "gif", "jpeg", "bmp", "webp", "tiff", "image")
    assert out.sections == []
