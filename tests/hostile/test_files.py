"""Hostile files rather than hostile skills: links out of the bucket, FIFOs, huge sparse files, names
built to confuse (newlines, non-UTF-8, traversal, option-like names), files that change or vanish while
they are processed, and a `.ignore` file that tries to hide a grep match.
"""

from __future__ import annotations

import os

import pytest

from tests.harness import wait_for
from tests.hostile.arena import Arena, records_by_file

pytestmark = pytest.mark.timeout(120)


def test_hostile_files_get_clear_answers_and_nothing_leaks(arena: Arena) -> None:
    grep = (
        '[[grep]]\nname = "needle"\nregex = "NEEDLE"\nscope = "directory"\n'
        '[[skills]]\npattern = "-e"\ncommand = ["grep", "-c", "NEEDLE", "{input}"]\n'
        '[[skills]]\npattern = "--pre=sh"\ncommand = ["rg", "-c", "NEEDLE", "{input}"]\n'
    )
    with arena.start(arena.config(extra=grep), workers=2) as svc:
        svc.wait_ready(2)
        bucket = svc.bucket
        (bucket / "link-out.txt").symlink_to(arena.secret)
        os.mkfifo(bucket / "pipe.txt")
        with open(arena.base / ".sparse", "wb") as fh:
            fh.truncate(2 * 1024 * 1024 * 1024)
        os.rename(arena.base / ".sparse", bucket / "sparse.bin")
        weird = {
            "new\nline.txt": b"a name with a newline\n",
            os.fsdecode(b"latin-\xe9t\xe9.txt"): b"a name that is not UTF-8\n",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd": b"a name that looks like URL-encoded traversal\n",
            "x..\\..\\etc\\passwd": b"a name that looks like Windows traversal\n",
            "-e": b"NEEDLE in a file named -e\n",
            "--pre=sh": b"NEEDLE in a file named --pre=sh\n",
            ".ignore": b"*\n",  # a dotfile (never a job) that tells rg to ignore everything
        }
        for name, data in weird.items():
            staged = arena.base / "staged"
            staged.write_bytes(data)
            os.rename(staged, os.path.join(os.fsencode(bucket), os.fsencode(name)))
        jobs = len(weird) - 1 + 3  # every file but the dotfile, plus the link, FIFO and sparse file
        svc.wait_terminal(jobs, timeout=60)

        records = records_by_file(svc)
        assert records["link-out.txt"][0]["category"] == "FileAccess"
        assert records["pipe.txt"][0]["category"] == "FileAccess"
        assert records["sparse.bin"][0]["category"] == "FileContent"
        assert "too large" in records["sparse.bin"][0]["error"]["message"]
        for name in (
            "new\nline.txt",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "x..\\..\\etc\\passwd",
            "-e",
            "--pre=sh",
        ):
            assert [r["_kind"] for r in records[name]] == ["SUCCESS"], (name, records[name])
        assert any("latin-" in name and r[0]["_kind"] == "SUCCESS" for name, r in records.items())
        # Option-like names are data: each tool found the needle in its file, and the .ignore hid nothing.
        for name in ("-e", "--pre=sh"):
            record = records[name][0]
            matches = record["context"]["grepMatches"]
            assert {(m["rule"], m["path"]) for m in matches} == {("needle", "-e"), ("needle", "--pre=sh")}
            assert record["context"]["details"]["exit_code"] == 0, record["context"]  # grep / rg found it
            assert "\n1\n" in (svc.notes / f"{name}.obs.md").read_text()  # the count, in its Output block
        # Every note stayed inside the output directory, and none of them holds the secret.
        notes = list(svc.notes.rglob("*.obs.md"))
        assert all(svc.notes in p.parents for p in notes)
        assert not any("TOP SECRET" in p.read_text(errors="replace") for p in notes)
        assert svc.status()["health"] == "healthy"
        assert svc.stop() == 0


def test_a_file_that_grows_or_vanishes_while_processed(arena: Arena) -> None:
    slow = arena.handler_rule("slow").replace('"h-slow.txt"', '"slow-*.txt"')
    with arena.start(arena.config(extra=slow), workers=2) as svc:
        svc.wait_ready(2)
        arena.drop(svc, ["slow-grows.txt", "slow-vanishes.txt"], b"first version\n")

        def started(name: str) -> bool:  # the skill runs: the pipeline has opened and read the file
            return (svc.notes / f".started-{name}").exists()

        wait_for(lambda: started("slow-grows.txt") and started("slow-vanishes.txt"), 30, "both skills to run")
        with open(svc.bucket / "slow-grows.txt", "ab") as fh:
            fh.write(b"grown while it was processed\n" * 100)
        os.unlink(svc.bucket / "slow-vanishes.txt")
        final_size = (svc.bucket / "slow-grows.txt").stat().st_size

        def idle() -> bool:
            jobs = svc.status()["jobs"]
            return jobs["queued"] == jobs["running"] == 0 and jobs["done"] + jobs["failed"] >= 3

        wait_for(idle, 60, "both versions of the growing file and the vanished file to end")
        records = records_by_file(svc)
        # The vanished file had been opened: its one version is processed from what was read, once.
        assert [r["_kind"] for r in records["slow-vanishes.txt"]] == ["SUCCESS"]
        # The growing file is two versions, each ending in exactly one record.
        grows = records["slow-grows.txt"]
        sizes = sorted(r["context"]["version"]["size"] for r in grows)
        assert sizes == [len(b"first version\n"), final_size], grows
        assert [r["_kind"] for r in grows] == ["SUCCESS", "SUCCESS"]
        assert svc.status()["health"] == "healthy"
        assert svc.stop() == 0
