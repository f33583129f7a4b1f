"""`.error` sidecars: rendering, what of the failed file is pasted (and what never is), where they go, and
that they are never written inside a bucket unless configured so."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import Config
from coordinator.jobs import Job
from coordinator.sidecars import (
    Content,
    Sidecars,
    content_of,
    fenced,
    read_text,
    render_sidecar,
    sidecar_path,
)
from coordinator.states import JobState

WHEN = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_job(path: Path, bucket: str, relpath: str, notes: Path, **fields: Any) -> Job:
    """A job for the file at `path` (its current version, if it exists)."""
    st = os.lstat(path) if os.path.lexists(path) else None
    key = (bucket, relpath, st.st_size, st.st_mtime_ns, st.st_ino) if st else (bucket, relpath, 0, 0, 0)
    return Job(1, key, str(path), relpath, f"{notes}/{relpath}.obs.md", **fields)


def config(tmp_path: Path, **notes: Any) -> Config:
    return Config.model_validate(
        {
            "service": {"output": str(tmp_path / "notes"), "state_dir": str(tmp_path / "state")},
            "buckets": [{"name": "in", "path": str(tmp_path / "in")}],
            "notes": notes,
        }
    )


def render(job: Job, content: Content, state: JobState = JobState.FAILED, **error: Any) -> str:
    fields: dict[str, Any] = {"category": "FileContent", "message": "it is broken"} | error
    return render_sidecar(
        job, state, record="ERROR-2023-11-14-221320-000001.json", when=WHEN, content=content, **fields
    )


def fences(text: str) -> list[tuple[str, str]]:
    """(fence, body) of every fenced block, parsed the CommonMark way: a block ends at a line of at least
    as many backticks as opened it."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        m = re.match(r"^(`{3,})", lines[i])
        if m:
            fence, body = m.group(1), []
            i += 1
            while i < len(lines) and not re.fullmatch(f"`{{{len(fence)},}}\\s*", lines[i]):
                body.append(lines[i])
                i += 1
            blocks.append((fence, "\n".join(body)))
        i += 1
    return blocks


# -- rendering ---------------------------------------------------------------------------------------------


def test_every_field_is_rendered_and_the_stack_is_fenced(tmp_path: Path) -> None:
    job = make_job(
        tmp_path / "in/sub/report.pdf", "in", "sub/report.pdf", tmp_path / "notes", attempts=3, kills=1
    )
    text = render(
        job,
        Content(why_not="binary file"),
        error_name="FileTooLarge",
        code="EFBIG",
        stack='Traceback (most recent call last):\n  File "x.py", line 1\nValueError: no\n',
        component="worker",
    )
    assert text.startswith("# Error: `report.pdf`\n")
    for row in [
        "| File | `report.pdf` |",
        f"| Path | `{tmp_path}/in/sub/report.pdf` |",
        "| Bucket | `in` |",
        "| Relative path | `sub/report.pdf` |",
        "| Time | 2023-11-14T22:13:20Z |",
        "| State | failed |",
        "| Category | `FileContent` |",
        "| Severity | INFO |",
        "| Error | `FileTooLarge` (code `EFBIG`) |",
        "| Attempts | 3 (worker deaths: 1) |",
        "| Record | `ERROR-2023-11-14-221320-000001.json` |",
    ]:
        assert row in text.splitlines(), row
    blocks = fences(text)
    assert blocks[0] == ("```", "it is broken")
    assert blocks[1][1].startswith("Traceback") and blocks[1][1].endswith("ValueError: no")
    assert "Not shown: binary file." in text


def test_no_stack_no_stack_section_and_untrusted_strings_stay_inline(tmp_path: Path) -> None:
    name = "a`b|c\nd.txt"
    job = make_job(tmp_path / "in" / name, "in", name, tmp_path / "notes")
    text = render(job, Content(text="", size=0), message="line 1\n# not a heading\n")
    assert "## Stack" not in text
    assert "| File | ``a`b\\|c d.txt`` |" in text.splitlines()  # one line, a pipe cannot end the cell
    assert fences(text)[0] == ("```", "line 1\n# not a heading")  # the message cannot write markdown
    assert "Empty file." in text


def test_content_is_fenced_and_cut_with_a_visible_marker(tmp_path: Path) -> None:
    src = tmp_path / "in" / "big.txt"
    src.parent.mkdir()
    src.write_text("x" * 100 + "\n" + "y" * 100)
    job = make_job(src, "in", "big.txt", tmp_path / "notes")
    content = content_of(job, JobState.FAILED, "FileContent", 50)
    assert (content.text, content.shown, content.size, content.truncated) == ("x" * 50, 50, 201, True)
    text = render(job, content)
    assert fences(text)[-1] == ("```", "x" * 50)
    assert "*truncated: first 50 of 201 bytes*" in text


def test_backtick_runs_in_the_content_cannot_close_its_fence(tmp_path: Path) -> None:
    hostile = "before\n```\n# Injected heading\n[click](javascript:alert(1))\n``````\nafter\n"
    src = tmp_path / "in" / "evil.md"
    src.parent.mkdir()
    src.write_text(hostile)
    job = make_job(src, "in", "evil.md", tmp_path / "notes")
    text = render(job, content_of(job, JobState.FAILED, "FileContent", 1024))
    fence, body = fences(text)[-1]
    assert len(fence) == 7 and body == hostile.rstrip("\n")
    assert text.rstrip("\n").endswith(fence)  # the block ends where we ended it
    assert fenced("a\n````b")[0] == "`````text"  # runs anywhere in a line count, not only at its start


def test_a_cut_through_a_multibyte_character_drops_that_character(tmp_path: Path) -> None:
    src = tmp_path / "u.txt"
    src.write_bytes("é".encode() * 10)  # 20 bytes
    content = read_text(str(src), 5)
    assert content.text == "éé" and content.shown == 4 and content.truncated


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"text\x00with a NUL", "binary file"),
        (b"\xff\xfe not utf-8", "binary file (not UTF-8 text)"),
    ],
)
def test_binary_files_are_never_pasted(tmp_path: Path, data: bytes, why: str) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    job = make_job(src, "in", "f.bin", tmp_path / "notes")
    content = content_of(job, JobState.FAILED, "FileContent", 1024)
    assert content.text is None and content.why_not == why
    assert "Not shown: binary file" in render(job, content)


def test_quarantined_cancelled_changed_and_non_files_are_never_read(tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("readable text\n")
    job = make_job(src, "in", "f.txt", tmp_path / "notes")
    assert content_of(job, JobState.FAILED, "FileContent", 1024).text == "readable text\n"
    assert "quarantined" in content_of(job, JobState.QUARANTINED, "WorkerCrash", 1024).why_not
    assert content_of(job, JobState.FAILED, "Cancelled", 1024).text is None
    assert content_of(job, JobState.FAILED, "FileContent", 0).text is None
    src.write_text("a newer version\n")  # the sidecar is about the version that failed
    assert "changed" in content_of(job, JobState.FAILED, "FileContent", 1024).why_not

    link = tmp_path / "link.txt"
    link.symlink_to(src)
    as_link = make_job(link, "in", "link.txt", tmp_path / "notes", kind="symlink")
    assert content_of(as_link, JobState.FAILED, "FileAccess", 1024).why_not == "a symlink is never opened"
    # Even if a job thinks it is a file, a symlink swapped in is not followed, and a FIFO does not block.
    assert "could not be opened" in read_text(str(link), 1024).why_not
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert read_text(str(fifo), 1024).why_not == "it is not a regular file"


# -- where they go, and where not --------------------------------------------------------------------------


def test_path_beside_the_note_or_under_sidecar_dir(tmp_path: Path) -> None:
    job = make_job(tmp_path / "in/sub/report.pdf", "in", "sub/report.pdf", tmp_path / "notes")
    assert sidecar_path(job, None) == f"{tmp_path}/notes/sub/report.pdf.error"
    assert sidecar_path(job, "/var/errors") == "/var/errors/in/sub/report.pdf.error"
    sidecars = Sidecars()
    assert sidecars.path_for(config(tmp_path), job) == f"{tmp_path}/notes/sub/report.pdf.error"
    cfg = config(tmp_path, sidecar_dir=str(tmp_path / "errors"))
    assert sidecars.path_for(cfg, job) == f"{tmp_path}/errors/in/sub/report.pdf.error"


def test_written_beside_the_note_then_removed_by_a_later_success(tmp_path: Path) -> None:
    src = tmp_path / "in" / "sub" / "a.txt"
    src.parent.mkdir(parents=True)
    src.write_text("hello ``` world\n")
    job = make_job(src, "in", "sub/a.txt", tmp_path / "notes", record="ERROR-x-000001.json", finished_at=WHEN)
    cfg, sidecars = config(tmp_path), Sidecars()
    sidecars.failed(cfg, job, JobState.FAILED, {"category": "FileContent", "message": "bad", "name": "Nope"})
    written = tmp_path / "notes" / "sub" / "a.txt.error"
    text = written.read_text()
    assert "| Error | `Nope` |" in text and "hello ``` world" in text and "`ERROR-x-000001.json`" in text
    assert sidecars.written == 1 and [p.name for p in written.parent.iterdir()] == ["a.txt.error"]  # no temp
    sidecars.succeeded(cfg, job)
    assert not written.exists() and sidecars.removed == 1
    sidecars.succeeded(cfg, job)  # nothing to remove: nothing happens
    assert sidecars.removed == 1 and sidecars.failures == 0


def test_cancelled_rules_and_disabled_get_no_sidecar(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.txt"
    src.parent.mkdir()
    src.write_text("x\n")
    job = make_job(src, "in", "a.txt", tmp_path / "notes")
    sidecars = Sidecars()
    sidecars.failed(config(tmp_path), job, JobState.FAILED, {"category": "Cancelled", "message": "m"})
    rules = make_job(src, "in", "a.txt", tmp_path / "notes", kind="rules")
    sidecars.failed(config(tmp_path), rules, JobState.FAILED, {"category": "Configuration", "message": "m"})
    sidecars.failed(
        config(tmp_path, error_sidecars=False), job, JobState.FAILED, {"category": "X", "message": "m"}
    )
    assert not (tmp_path / "notes").exists() and sidecars.written == sidecars.failures == 0


def test_quarantined_sidecar_has_no_content(tmp_path: Path) -> None:
    src = tmp_path / "in" / "boom.txt"
    src.parent.mkdir()
    src.write_text("SECRET-LOOKING TEXT\n")
    job = make_job(src, "in", "boom.txt", tmp_path / "notes", kills=2)
    error = {"category": "WorkerCrash", "message": "quarantined after 2 worker deaths", "name": "Quarantined"}
    Sidecars().failed(config(tmp_path), job, JobState.QUARANTINED, error)
    text = (tmp_path / "notes" / "boom.txt.error").read_text()
    assert "| State | quarantined |" in text and "SECRET-LOOKING" not in text and "quarantined files" in text


def test_never_inside_a_bucket_unless_sidecar_dir_is_set_there(tmp_path: Path, capsys: Any) -> None:
    from loguru import logger

    handler = logger.add(lambda m: print(m, end=""), level="WARNING")  # noqa: T201 - to capsys
    try:
        bucket = tmp_path / "in"
        (bucket / "notes").mkdir(parents=True)
        src = bucket / "a.txt"
        src.write_text("x\n")
        # The bucket holds its own notes (allowed at start): a sidecar there would be a new file to it.
        cfg = Config.model_validate(
            {
                "service": {"state_dir": str(tmp_path / "state")},
                "buckets": [{"name": "in", "path": str(bucket), "output": str(bucket / "notes")}],
            }
        )
        job = make_job(src, "in", "a.txt", bucket / "notes")
        sidecars = Sidecars()
        assert sidecars.path_for(cfg, job) is None
        for _ in range(3):
            sidecars.failed(cfg, job, JobState.FAILED, {"category": "FileContent", "message": "m"})
        (bucket / "notes" / "a.txt.error").write_text("a user's own file")
        sidecars.succeeded(cfg, job)  # a file we would never have written is never removed either
        assert (bucket / "notes" / "a.txt.error").read_text() == "a user's own file"
        assert capsys.readouterr().out.count("no .error sidecars are written") == 1  # once per bucket

        # Through a symlink too: the check compares resolved paths.
        (tmp_path / "alias").symlink_to(bucket)
        via = Config.model_validate(
            {
                "service": {"state_dir": str(tmp_path / "state")},
                "buckets": [{"name": "in", "path": str(bucket), "output": str(tmp_path / "alias" / "n")}],
            }
        )
        assert Sidecars().path_for(via, make_job(src, "in", "a.txt", tmp_path / "alias" / "n")) is None

        # Set explicitly to a place inside the bucket: the operator's choice.
        chosen = cfg.model_copy(
            update={"notes": cfg.notes.model_copy(update={"sidecar_dir": bucket / "errs"})}
        )
        assert Sidecars().path_for(chosen, job) == f"{bucket}/errs/in/a.txt.error"
    finally:
        logger.remove(handler)


def test_a_sidecar_that_cannot_be_written_is_counted_and_never_raises(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a.txt"
    src.parent.mkdir()
    src.write_text("x\n")
    (tmp_path / "notes").write_text("a file where the notes dir should be")
    job = make_job(src, "in", "a.txt", tmp_path / "notes")
    sidecars = Sidecars()
    sidecars.failed(config(tmp_path), job, JobState.FAILED, {"category": "FileContent", "message": "m"})
    assert sidecars.failures == 1 and sidecars.written == 0


def test_a_hostile_name_is_a_code_span_in_the_heading(tmp_path: Path) -> None:
    name = "<img src=x onerror=alert(1)> ![[secret-note]].txt"
    job = make_job(tmp_path / "in" / name, "in", name, tmp_path / "notes")
    text = render(job, Content(why_not="binary file"))
    assert text.splitlines()[0] == f"# Error: `{name}`"
