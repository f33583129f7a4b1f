"""A burst of 10,000 files, written as fast as Python can, must end in 10,000 notes.

On tmpfs the kernel's inotify queue overflows under such a burst and watchdog only logs it; files in
brand-new subdirectories get no close events at all. The watcher's rescans must make up for both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import RunningService

N_FILES = 10_000


@pytest.mark.tmpfs
@pytest.mark.timeout(300)
def test_ten_thousand_file_burst_ends_in_ten_thousand_notes(scratch: Path) -> None:
    outside = scratch / "outside"
    outside.mkdir()
    with RunningService(scratch, workers=4) as svc:
        svc.wait_ready(4)
        expected: set[str] = set()
        for i in range(N_FILES):
            data = b"burst %d\n" % i
            if i % 10 == 0:  # renamed in from outside the bucket
                src = outside / f"r{i}.txt"
                src.write_bytes(data)
                os.rename(src, svc.bucket / f"r{i}.txt")
                rel = f"r{i}.txt"
            elif i % 10 == 1:  # into brand-new subdirectories, created mid-burst
                sub = svc.bucket / f"new{i // 500}" / f"deep{i // 100}"
                sub.mkdir(parents=True, exist_ok=True)
                (sub / f"n{i}.txt").write_bytes(data)
                rel = f"new{i // 500}/deep{i // 100}/n{i}.txt"
            else:
                (svc.bucket / f"f{i}.txt").write_bytes(data)
                rel = f"f{i}.txt"
            expected.add(rel)
        counts = svc.wait_terminal(N_FILES, timeout=240)
        assert counts["done"] == N_FILES, counts
        notes = {p.relative_to(svc.notes).as_posix()[: -len(".obs.md")] for p in svc.notes.rglob("*.obs.md")}
        assert notes == expected
        assert len(svc.records_of("SUCCESS")) == N_FILES
        assert svc.stop() == 0
