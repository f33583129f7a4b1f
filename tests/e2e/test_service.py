"""The whole path with real processes: coordinator, workers, ZeroMQ sockets, files in, notes out."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

import psutil
import pytest

from tests.harness import RunningService, wait_for

pytestmark = pytest.mark.timeout(120)


def front_matter(note: Path) -> dict[str, str]:
    text = note.read_text()
    assert text.startswith("---\n"), note
    block = text.split("---\n", 2)[1]
    out = {}
    for line in block.splitlines():
        m = re.match(r"^(\w+): (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


def test_four_workers_start_ready_and_stop_cleanly(scratch: Path) -> None:
    with RunningService(scratch, workers=4) as svc:
        rows = [r for r in svc.wait_ready(4) if not r["spare"]]
        assert sorted(r["slot"] for r in rows) == [0, 1, 2, 3]
        assert len({r["pid"] for r in rows}) == 4
        pids = [r["pid"] for r in rows]
        assert (svc.state / "run").stat().st_mode & 0o777 == 0o700
        me = psutil.Process().nice()
        assert all(psutil.Process(pid).nice() == me + 5 for pid in pids)  # workers yield to their supervisor
        assert (svc.state / "run" / "workers.sock").exists()
        assert svc.stop() == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (scratch / "state" / "run" / "control.sock").exists()


def test_files_present_at_start_and_dropped_later_each_get_one_note(scratch: Path) -> None:
    bucket = scratch / "bucket"
    bucket.mkdir()
    contents: dict[str, bytes] = {}
    for i in range(50):
        contents[f"early/e{i}.txt"] = f"early file {i}\nline two\n".encode()
    for rel, data in contents.items():
        (bucket / rel).parent.mkdir(parents=True, exist_ok=True)
        (bucket / rel).write_bytes(data)
    with RunningService(scratch, workers=4) as svc:
        svc.wait_ready(4)
        late: dict[str, bytes] = {}
        for i in range(150):
            kind = i % 3
            if kind == 0:
                late[f"l{i}.md"] = f"# Title {i}\n\nsome *markdown*\n".encode()
            elif kind == 1:
                late[f"sub/l{i}.json"] = b'{"n": %d}' % i
            else:
                late[f"l{i}.bin"] = bytes(range(256)) * 4 + b"\x00" * i
        for rel, data in late.items():
            (bucket / rel).parent.mkdir(parents=True, exist_ok=True)
            (bucket / rel).write_bytes(data)
        contents.update(late)
        counts = svc.wait_terminal(200, timeout=60)
        assert counts["done"] == 200, counts
        assert svc.notes_count() == 200
        for rel, data in contents.items():
            fm = front_matter(svc.notes / f"{rel}.obs.md")
            assert fm["sha256"] == hashlib.sha256(data).hexdigest()
            assert int(fm["size"]) == len(data)
        assert fm["worker"]  # every note names the worker that wrote it
        assert len(svc.records_of("SUCCESS")) == 200
        assert svc.records_of("ERROR") == []
        assert svc.stop() == 0


def test_temp_names_are_ignored_and_unmatched_patterns_rejected(scratch: Path) -> None:
    extra = 'patterns = ["*.txt", "docs/*.md"]\nignore = ["secret*"]\n'
    with RunningService(scratch, workers=2, extra_config=extra) as svc:
        svc.wait_ready(2)
        b = svc.bucket
        (b / "docs").mkdir()
        for name in [
            "a.txt",
            "docs/b.md",
            "c.csv",
            "secret.txt",
            ".hidden.txt",
            "x.part",
            "y.crdownload",
            "~z.txt",
        ]:
            (b / name).write_text("data\n")
        (b / "d.txt.tmp").write_text("renamed\n")
        os.rename(b / "d.txt.tmp", b / "d.txt")
        wait_for(lambda: svc.status()["jobs"]["done"] >= 3, 30, "3 notes")
        wait_for(lambda: svc.status()["watcher"]["rejected"] >= 2, 10, "2 rejected files")
        notes = sorted(p.relative_to(svc.notes).as_posix() for p in svc.notes.rglob("*.obs.md"))
        assert notes == ["a.txt.obs.md", "d.txt.obs.md", "docs/b.md.obs.md"]
        assert svc.stop() == 0


def test_non_regular_files_are_file_access_errors_and_nothing_blocks(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        b = svc.bucket
        os.symlink("/etc/passwd", b / "link.txt")
        os.mkfifo(b / "pipe.txt")
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(b / "sock"))
        (b / "after.txt").write_text("still processed\n")
        wait_for(lambda: len(svc.records_of("ERROR")) >= 3, 30, "3 ERROR records")
        wait_for(lambda: (svc.notes / "after.txt.obs.md").exists(), 30, "the regular file's note")
        errors = {Path(e["filePath"]).name: e for e in svc.records_of("ERROR")}
        assert set(errors) == {"link.txt", "pipe.txt", "sock"}
        assert {e["category"] for e in errors.values()} == {"FileAccess"}
        assert errors["pipe.txt"]["error"]["code"] == "fifo"
        server.close()
        assert all(r["state"] in ("ready", "busy") for r in svc.workers())
        assert svc.stop() == 0


def test_the_noop_pipeline_records_success_without_notes(scratch: Path) -> None:
    with RunningService(scratch, workers=2, extra_config='\n[jobs]\npipeline = "noop"\n') as svc:
        svc.wait_ready(2)
        for i in range(30):
            (svc.bucket / f"n{i}.txt").write_text("x\n")
        assert svc.wait_terminal(30, timeout=30)["done"] == 30
        records = svc.records_of("SUCCESS")
        assert len(records) == 30 and all(r["outputPath"] is None for r in records)
        assert svc.notes_count() == 0
        assert svc.status()["protocol"]["handler_errors"] == 0
        assert svc.stop() == 0
