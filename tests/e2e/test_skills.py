"""Skills through the real service: the right skill per file, the skill's findings in the note and the
record, a configured rule that overrides the built-in choice, and hostile files (an archive bomb, JSON
nested 100,000 deep) ending as FileContent ERROR records while the service keeps going."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from tests.harness import RunningService

pytestmark = pytest.mark.timeout(120)


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(50 * 1024 * 1024))  # ~50 KB packed, ratio ~1000
    return buf.getvalue()


def test_each_file_gets_its_skill_and_hostile_ones_are_refused(scratch: Path) -> None:
    files = {
        "readme.md": b"# Title\n\nSee [[Other note]] #todo\n",
        "data.json": b'{"a": 1, "b": [2, 3]}',
        "rows.csv": b"x,y\n1,2\n3,4\n",
        "tool.py": b"def f():\n    pass\n\nclass C:\n    pass\n",
        "app.log": b"2026-01-01 started\n",  # a rule below makes logs "text" explicitly
        "bomb.zip": _bomb(),
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
    }
    rules = (
        '[[skills]]\npattern = "*.log"\nskill = "text"\n'
        '[[grep]]\nname = "todo"\nregex = "#todo|^def "\ntags = ["has-todo"]\n'
    )
    with RunningService(scratch, workers=2, extra_config=rules) as svc:
        svc.wait_ready(2)
        for name, data in files.items():
            (svc.bucket / name).write_bytes(data)
        counts = svc.wait_terminal(len(files), timeout=60)
        assert counts["done"] == 5 and counts["failed"] == 2, counts

        done = {r["relativePath"]: r for r in svc.records_of("SUCCESS")}
        skills = {name: done[name]["context"]["skill"] for name in done}
        assert skills == {
            "readme.md": "markdown",
            "data.json": "json",
            "rows.csv": "csv",
            "tool.py": "code",
            "app.log": "text",
        }
        assert done["tool.py"]["context"]["details"]["definitions"] == 2
        assert done["data.json"]["context"]["details"]["valid"] is True
        note = (svc.notes / "readme.md.obs.md").read_text()
        assert 'skill: "markdown"' in note and "## Links" in note and "[[Other note]]" in note
        assert "has-todo" in note and "## Grep matches" in note
        assert done["readme.md"]["context"]["grepMatches"] == [
            {"rule": "todo", "line": 3, "text": "See [[Other note]] #todo"}
        ]
        assert [m["line"] for m in done["tool.py"]["context"]["grepMatches"]] == [1]
        assert done["rows.csv"]["context"]["grepMatches"] == []

        errors = {r["relativePath"]: r for r in svc.records_of("ERROR")}
        assert {n: (e["category"], e["error"]["code"]) for n, e in errors.items()} == {
            "bomb.zip": ("FileContent", "EBOMB"),
            "deep.json": ("FileContent", "EDEPTH"),
        }
        assert not (svc.notes / "bomb.zip.obs.md").exists()
        assert all(w["state"] in ("ready", "busy") for w in svc.workers())  # nobody died on the way
        assert svc.stop() == 0


HANDLER = """
def describe(path, context):
    text = context.text or ""
    if "FAIL" in text:
        raise RuntimeError("the handler gave up on " + context.name)
    total = sum(int(w) for w in text.split() if w.isdigit())
    return {"total": total, "path_seen": path.endswith(context.name)}
"""


def test_a_handler_skill_runs_in_the_workers_and_its_failure_is_recorded(scratch: Path) -> None:
    skills_dir = scratch / "skills"
    skills_dir.mkdir()
    (skills_dir / "ob_e2e_invoices.py").write_text(HANDLER)
    config = (
        f'[jobs]\nskill_paths = ["{skills_dir}"]\n'
        '[[skills]]\npattern = "*.inv"\nhandler = "ob_e2e_invoices:describe"\n'
    )
    with RunningService(scratch, workers=2, extra_config=config) as svc:
        svc.wait_ready(2)
        (svc.bucket / "march.inv").write_text("items 3 and 4\n")
        (svc.bucket / "broken.inv").write_text("FAIL\n")
        (svc.bucket / "plain.txt").write_text("not for the handler\n")
        counts = svc.wait_terminal(3, timeout=60)
        assert counts["done"] == 2 and counts["failed"] == 1, counts
        done = {r["relativePath"]: r["context"] for r in svc.records_of("SUCCESS")}
        assert done["march.inv"]["skill"] == "ob_e2e_invoices:describe"
        assert done["march.inv"]["details"] == {"total": 7, "path_seen": True}
        assert done["plain.txt"]["skill"] == "text"
        (error,) = svc.records_of("ERROR")
        assert (error["relativePath"], error["category"], error["error"]["code"]) == (
            "broken.inv",
            "ExternalTool",
            "EHANDLER",
        )
        assert "the handler gave up on broken.inv" in error["error"]["message"]
        assert "RuntimeError" in error["error"]["stack"]
        assert all(w["state"] in ("ready", "busy") for w in svc.workers())
        assert svc.stop() == 0


def test_command_skills_run_in_the_workers_with_their_failures_recorded(scratch: Path) -> None:
    upper = "import sys; sys.stdout.write(open(sys.argv[1]).read().upper())"
    fail = "import sys; sys.stderr.write('bad input'); sys.exit(3)"

    def rule(pattern: str, code: str) -> str:
        argv = json.dumps([sys.executable, "-c", code, "{input}"])  # a JSON list is a TOML array
        return f'[[skills]]\npattern = "{pattern}"\ncommand = {argv}\n'

    config = rule("*.up", upper) + rule("*.bad", fail)
    with RunningService(scratch, workers=2, extra_config=config) as svc:
        svc.wait_ready(2)
        (svc.bucket / "shout.up").write_text("quiet words\n")
        (svc.bucket / "broken.bad").write_text("x\n")
        counts = svc.wait_terminal(2, timeout=60)
        assert counts["done"] == 1 and counts["failed"] == 1, counts
        (done,) = svc.records_of("SUCCESS")
        assert done["context"]["skill"] == f"command:{sys.executable}"
        assert done["context"]["details"]["exit_code"] == 0
        assert "QUIET WORDS" in (svc.notes / "shout.up.obs.md").read_text()
        (error,) = svc.records_of("ERROR")
        assert (error["category"], error["error"]["code"]) == ("ExternalTool", "EXIT3")
        assert "bad input" in error["error"]["message"]
        assert svc.stop() == 0


def test_a_directory_grep_rule_lists_matches_across_the_bucket(scratch: Path) -> None:
    bucket = scratch / "bucket"
    (bucket / "sub").mkdir(parents=True)
    (bucket / "a.txt").write_text("order ref-1 shipped\n")
    (bucket / "sub" / "b.txt").write_text("nothing here\nsee ref-22\n")
    config = '[[grep]]\nname = "refs"\nregex = "ref-\\\\d+"\nscope = "directory"\n'
    with RunningService(scratch, workers=2, extra_config=config) as svc:
        svc.wait_ready(2)
        counts = svc.wait_terminal(2, timeout=60)
        assert counts["done"] == 2, counts
        for record in svc.records_of("SUCCESS"):
            matches = [(m["path"], m["line"]) for m in record["context"]["grepMatches"]]
            assert matches == [("a.txt", 1), ("sub/b.txt", 2)], record["relativePath"]
        assert "`sub/b.txt` line 2: `see ref-22`" in (svc.notes / "a.txt.obs.md").read_text()
        assert svc.stop() == 0
