"""`.error` sidecars with the real service: a failed text file gets one beside where its note would be (with
its category, message, stack and capped content), a binary or quarantined one gets one without content, a
later version that succeeds removes it, and `notes.error_sidecars = false` writes none."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_policy import Faulty
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(120)

PLAN = [{"match": "boom", "action": "crash"}, {"match": "bad", "action": "raise"}]
# Longer than the cap below, and with a backtick run that would end a three-backtick fence.
HOSTILE = "first line\n````\n# injected heading\n" + "z" * 100 + "\n"


def records_by_path(f: Faulty) -> dict[str, dict[str, object]]:
    return {str(r["relativePath"]): r for r in f.svc.records_of("ERROR")}


def test_failed_files_get_sidecars_and_a_later_success_removes_one(scratch: Path) -> None:
    extra = "\n[notes]\nsidecar_content_bytes = 40\n"
    with Faulty(scratch, workers=2, extra=extra, supervisor="quarantine_after = 1\n") as f:
        f.plan(PLAN)
        f.svc.wait_ready(2)
        f.drop("bad.txt", HOSTILE.encode())
        f.drop("bad-binary.txt", b"\x00\x01\x02binary\xff" * 20)
        f.drop("boom.txt", b"crashes its worker\n")
        f.drop("fine.md", b"# fine\n")  # not for the faulty handler: succeeds
        counts = f.svc.wait_terminal(4, 60)
        assert (counts["done"], counts["failed"], counts["quarantined"]) == (1, 2, 1), counts
        notes, records = f.svc.notes, records_by_path(f)

        text = (notes / "bad.txt.error").read_text()
        record = records["bad.txt"]
        error = record["error"]
        assert isinstance(error, dict)
        assert text.startswith("# Error: `bad.txt`\n")
        assert f"| Category | `{record['category']}` |" in text
        assert error["message"] in text and "Traceback" in text  # the handler's stack, fenced
        assert f"| Path | `{f.svc.bucket / 'bad.txt'}` |" in text and "| Bucket | `bucket` |" in text
        record_names = [p.name for p in f.svc.records.glob("ERROR-*.json")]
        assert any(f"`{name}`" in text for name in record_names)
        # The first 40 bytes, in a fence the file's own four backticks cannot close, and the cut said so.
        assert "`````text\nfirst line\n````\n# injected heading\nzzzzz\n`````\n" in text
        assert f"*truncated: first 40 of {len(HOSTILE)} bytes*" in text

        binary = (notes / "bad-binary.txt.error").read_text()
        assert "Not shown: binary file." in binary and "binary\ufffd" not in binary

        quarantined = (notes / "boom.txt.error").read_text()
        assert "| State | quarantined |" in quarantined and "crashes its worker" not in quarantined
        assert "Not shown: the file was quarantined" in quarantined

        assert not (notes / "fine.md.error").exists() and (notes / "fine.md.obs.md").exists()
        # No temp file left: neither a sidecar's nor the temp note a worker killed mid-write leaves (a retry
        # reuses it; the coordinator removes a quarantined job's).
        assert sorted(p.name for p in notes.iterdir() if p.name.startswith(".")) == []
        assert not list(f.svc.bucket.glob("*.error"))

        # A new version that the handler now accepts: its note is written, the stale sidecar goes.
        f.plan([])
        f.drop("bad.txt", b"mended\n")
        wait_for(lambda: (notes / "bad.txt.obs.md").exists(), 30, "the mended file's note")
        wait_for(lambda: not (notes / "bad.txt.error").exists(), 10, "the stale sidecar to go")
        assert (notes / "bad-binary.txt.error").exists()
        assert "removed the .error sidecar of an earlier version" in f.svc.log()
        assert f.svc.stop() == 0


def test_no_sidecars_when_turned_off(scratch: Path) -> None:
    with Faulty(scratch, workers=1, extra="\n[notes]\nerror_sidecars = false\n") as f:
        f.plan(PLAN)
        f.svc.wait_ready(1)
        f.drop("bad.txt", b"refused\n")
        counts = f.svc.wait_terminal(1, 30)
        assert counts["failed"] == 1 and len(f.svc.records_of("ERROR")) == 1
        assert not list(scratch.rglob("*.error"))
        assert f.svc.stop() == 0
