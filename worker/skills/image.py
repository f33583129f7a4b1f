"""An image's format and size from its header, without decoding a single pixel.

PNG, GIF, JPEG, BMP, WebP and TIFF say how big they are in their first bytes (JPEG and TIFF a little
further in, at offsets the file gives). Every read is bounds-checked by `struct` and every walk has a
fixed number of steps, so a garbage or truncated header is not an error: the size is just unknown
(`width`/`height` None) and the pipeline still describes the file.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from worker.pipeline.errors import FileAccessError, errno_name
from worker.skills.base import FieldValue, SkillInput, SkillOutput

_HEAD_BYTES = 64 * 1024
_MAX_JPEG_SEGMENTS = 1024  # real files have a few dozen; this only bounds a hostile one
_MAX_TIFF_TAGS = 4096

_PNG_COLOR = {0: "grayscale", 2: "rgb", 3: "palette", 4: "grayscale+alpha", 6: "rgba"}
_JPEG_COLOR = {1: "grayscale", 3: "ycbcr", 4: "cmyk"}
_TIFF_COLOR = {0: "white-is-zero", 1: "black-is-zero", 2: "rgb", 3: "palette", 5: "cmyk", 6: "ycbcr"}
#: SOF0..SOF15 carry the frame size; the other codes in that range are tables (DHT, DAC) or reserved (JPG).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0..RST7: no length follows

#: Reads `size` bytes at `offset` (fewer at the end of the file).
_ReadAt = Callable[[int, int], bytes]
_Fields = dict[str, FieldValue]
#: Parses one format: its first bytes, and a reader for anything further in.
_Parser = Callable[[bytes, _ReadAt], _Fields | None]


def image(inp: SkillInput) -> SkillOutput:
    """Name an image's format and read its width and height (and depth/colour where the header says)."""
    read_at = _reader(inp)
    head = read_at(0, _HEAD_BYTES)
    fmt, parse = _sniff(head)
    found: _Fields | None = None
    if parse is not None:
        try:
            found = parse(head, read_at)
        except (struct.error, ValueError):
            found = None  # truncated or garbage: the size is unknown, which is not an error
    fields: _Fields = {"format": fmt or inp.facts.file_type, "width": None, "height": None}
    fields |= found or {}
    return SkillOutput(fields=fields, tags=[f"image/{fmt}"] if fmt else [])


def _png(head: bytes, _: _ReadAt) -> _Fields | None:
    length, chunk, width, height, depth, color = struct.unpack_from(">I4sIIBB", head, 8)
    if chunk != b"IHDR" or length < 13:
        return None
    return {"width": width, "height": height, "bit_depth": depth, "color_type": _PNG_COLOR.get(color)}


def _gif(head: bytes, _: _ReadAt) -> _Fields | None:
    width, height = struct.unpack_from("<HH", head, 6)  # the logical screen
    return {"width": width, "height": height}


def _bmp(head: bytes, _: _ReadAt) -> _Fields | None:
    (dib_size,) = struct.unpack_from("<I", head, 14)
    if dib_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height, _planes, depth = struct.unpack_from("<HHHH", head, 18)
    elif dib_size >= 40:
        width, height, _planes, depth = struct.unpack_from("<iiHH", head, 18)
    else:
        return None
    return {"width": abs(width), "height": abs(height), "bit_depth": depth}  # negative height: top-down


def _webp(head: bytes, _: _ReadAt) -> _Fields | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack_from("<HH", head, 26)
        return {"width": width & 0x3FFF, "height": height & 0x3FFF}
    if chunk == b"VP8L":  # lossless: a signature byte, then 14 + 14 bits of size - 1
        if head[20:21] != b"\x2f":
            return None
        (bits,) = struct.unpack_from("<I", head, 21)
        return {
            "width": (bits & 0x3FFF) + 1,
            "height": ((bits >> 14) & 0x3FFF) + 1,
            "alpha": bool(bits >> 28 & 1),
        }
    if chunk == b"VP8X":  # extended: flags, then 24-bit canvas size - 1
        flags, width, height = struct.unpack_from("<B3x3s3s", head, 20)
        return {
            "width": int.from_bytes(width, "little") + 1,
            "height": int.from_bytes(height, "little") + 1,
            "alpha": bool(flags & 0x10),
            "animated": bool(flags & 0x02),
        }
    return None


def _jpeg(_: bytes, read_at: _ReadAt) -> _Fields | None:
    # Walk the marker segments from after SOI to the first SOF, giving up at SOS (entropy-coded data
    # follows) or after a fixed number of segments. Segments (EXIF, ICC) may push SOF past the head.
    pos = 2
    for _step in range(_MAX_JPEG_SEGMENTS):
        prefix, marker = struct.unpack(">BB", read_at(pos, 2))
        if prefix != 0xFF:
            return None
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS
            return None
        (length,) = struct.unpack(">H", read_at(pos + 2, 2))
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            depth, height, width, components = struct.unpack(">BHHB", read_at(pos + 4, 6))
            return {
                "width": width,
                "height": height,
                "bit_depth": depth,
                "color_type": _JPEG_COLOR.get(components),
            }
        pos += 2 + length
    return None


def _tiff(head: bytes, read_at: _ReadAt) -> _Fields | None:
    order = "<" if head.startswith(b"II") else ">"
    (ifd,) = struct.unpack_from(order + "I", head, 4)  # the first IFD may be anywhere, even at the end
    (count,) = struct.unpack(order + "H", read_at(ifd, 2))
    entries = read_at(ifd + 2, 12 * min(count, _MAX_TIFF_TAGS))
    tags: dict[int, int] = {}
    for i in range(len(entries) // 12):
        tag, kind, n, raw = struct.unpack_from(order + "HHI4s", entries, 12 * i)
        if tag not in (256, 257, 258, 262):  # follow no offsets for tags that are not shown
            continue
        if kind == 3:  # SHORT: the first value is in the first two bytes, or at an offset if they don't fit
            where = raw if n <= 2 else read_at(struct.unpack(order + "I", raw)[0], 2)
            tags[tag] = struct.unpack_from(order + "H", where)[0]
        elif kind == 4 and n == 1:  # LONG
            tags[tag] = struct.unpack(order + "I", raw)[0]
    if 256 not in tags or 257 not in tags:  # ImageWidth, ImageLength
        return None
    fields: _Fields = {"width": tags[256], "height": tags[257]}
    if 258 in tags:
        fields["bit_depth"] = tags[258]  # BitsPerSample (of the first sample)
    if 262 in tags:
        fields["color_type"] = _TIFF_COLOR.get(tags[262])  # PhotometricInterpretation
    return fields


def _sniff(head: bytes) -> tuple[str | None, _Parser | None]:
    """The format the magic announces, and its parser."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png", _png
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif", _gif
    if head.startswith(b"\xff\xd8"):
        return "jpeg", _jpeg
    if head.startswith(b"BM"):
        return "bmp", _bmp
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp", _webp
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff", _tiff
    return None, None


def _reader(inp: SkillInput) -> _ReadAt:
    """Reads from `content` when the pipeline handed it over, else from the descriptor."""
    content = inp.content
    if content is not None:
        return lambda offset, size: content[offset : offset + size]

    def pread(offset: int, size: int) -> bytes:
        try:
            return os.pread(inp.fd, size, offset)
        except OSError as exc:  # the file could not be read: not the image's fault
            raise FileAccessError(f"cannot read the image: {exc.strerror}", code=errno_name(exc)) from exc

    return pread
