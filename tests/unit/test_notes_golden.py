"""Golden notes: one generated file per built-in skill goes through the real pipeline, and its note must
match `tests/golden/<skill>.obs.md` byte for byte (the processing time and the temp path aside).

The notes are the product people read, so their format changes only on purpose: after a deliberate change,
rerun with `UPDATE_GOLDEN=1` to rewrite the files, and review the diff like any other code.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from protocol.messages import ContextRules, DirsRule
from worker.pipeline.context import ContextCollector
from worker.pipeline.process import process_file
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [
            ("docs/", b""),
            ("docs/a.txt", b"alpha\n" * 10),
            ("inner.zip", b"PK\x05\x06" + bytes(18)),
        ]:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 2, 3, 4, 6))
            zf.writestr(info, data)
    return buf.getvalue()


MARKDOWN = """---
title: Field notes
tags: [travel]
---
# Field notes

Met [[Alice]] and [[Bob|Robert]] at the #conference, see [the site](https://example.org/x).

## Day 1

```python
# not a heading
x = "#not-a-tag"
```

### Details #travel/2026
"""

CODE = '''"""A module."""


class Greeter:
    def hello(self, name):
        return f"hello {name}"


async def main():
    # a comment
    return Greeter().hello("x")
'''

FILES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "text": ("notes.txt", lambda: b"first line\nsecond line, longer than the first\n\nlast\n"),
    "markdown": ("field-notes.md", lambda: MARKDOWN.encode()),
    "json": (
        "data.json",
        lambda: json.dumps({"name": "x", "items": [1, 2, 3], "meta": {"a": None}}).encode(),
    ),
    "csv": ("table.csv", lambda: b"city,country,population\nLyon,France,522000\nPorto,Portugal,232000\n"),
    "code": ("greeter.py", lambda: CODE.encode()),
    "archive": ("bundle.zip", _zip),
    "image": ("pixel.png", lambda: _png(3, 2)),
    "binary": ("blob.bin", lambda: bytes(range(256)) * 4),
}


@pytest.mark.parametrize("skill", sorted(FILES))
def test_each_built_in_skill_renders_its_golden_note(skill: str, tmp_path: Path) -> None:
    name, make = FILES[skill]
    source = tmp_path / "bucket" / name
    source.parent.mkdir()
    source.write_bytes(make())
    output = tmp_path / "notes" / f"{name}.obs.md"
    facts = process_file(
        str(source),
        str(output),
        bucket="inbox",
        relpath=name,
        worker="0.1",
        max_input_bytes=1 << 20,
        preview_lines=0,  # the default: the whole text, up to the content cap
        job_id="42",
    )
    assert facts.skill == skill
    note = _normalized(output.read_text(), str(source))
    golden = GOLDEN / f"{skill}.obs.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(note)
    assert note == golden.read_text(), f"note for {skill} changed; rerun with UPDATE_GOLDEN=1 if on purpose"


def test_a_note_with_bucket_include_context_renders_its_golden_note(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    for name, data in {
        "notes.txt": b"first line\nsecond line, longer than the first\n\nlast\n",
        "docs/guide.md": b"# Guide\n\nsee `config`\n",
        "docs/api.md": b"x" * 2048,
        "docs/draft.tmp.md": b"excluded\n",
        "build/out.md": b"pruned\n",
        "configs/app.ini": b"[server]\nport = 80\n; TODO: tls\nhost = example\n\nworkers = 4\n"
        b"\nretries = 3\n# FIXME ```not a fence```\n",
        "configs/db.ini": b"user = app\n",
    }.items():
        (bucket / name).parent.mkdir(parents=True, exist_ok=True)
        (bucket / name).write_bytes(data)
    rules = ContextRules(
        key="golden",
        includes=["*.md", "notes.txt"],
        excludes=["*.tmp.md", "build/**"],
        dirs=[DirsRule(path="configs", patterns=["TODO|FIXME", r"^port\b"])],
    )
    output = tmp_path / "notes" / "notes.txt.obs.md"
    collector = ContextCollector(DirectoryGrep(Breakers(), tools=("python",)))
    facts = process_file(
        str(bucket / "notes.txt"), str(output), bucket="inbox", relpath="notes.txt", worker="0.1",
        max_input_bytes=1 << 20, preview_lines=0, job_id="42", context=rules, collector=collector,
    )  # fmt: skip
    assert facts.context is not None and facts.context.related_files == 2
    note = _normalized(output.read_text(), str(bucket / "notes.txt"))
    golden = GOLDEN / "context.obs.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(note)
    assert note == golden.read_text(), "note with context changed; rerun with UPDATE_GOLDEN=1 if on purpose"


def test_the_same_file_gives_the_same_note(tmp_path: Path) -> None:
    source = tmp_path / "field-notes.md"
    source.write_text(MARKDOWN)
    notes = []
    for i in range(2):
        output = tmp_path / f"n{i}.obs.md"
        process_file(
            str(source),
            str(output),
            bucket="b",
            relpath="field-notes.md",
            worker="w",
            max_input_bytes=1 << 20,
            preview_lines=5,
        )
        notes.append(_normalized(output.read_text(), str(source)))
    assert notes[0] == notes[1]


def _normalized(note: str, source: str) -> str:
    lines = []
    for line in note.split("\n"):
        if line.startswith("processed_at: "):
            line = 'processed_at: "<time>"'
        lines.append(line)
    return "\n".join(lines).replace(json.dumps(source), '"<source>"')
