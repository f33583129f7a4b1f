"""`.bucket-include` context end to end: the real coordinator and workers, rule files in the Node
prototype's documented shapes, real drops, and the notes and records read back.

The fixtures are the prototype's: include and exclude globs, `[dirs:./configs]` and `[dirs:./templates]`
sections searching for TODO|FIXME|HACK, a `.js.bucket-include` on top for JavaScript files, and a global
profile under a temporary XDG_CONFIG_HOME.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.harness import RunningService, cli, wait_for

pytestmark = pytest.mark.timeout(240)

BUCKET_RULES = """\
# what a note about any file of this bucket carries
docs/**/*.md
*.txt
!docs/drafts/**

[dirs:./configs]
TODO|FIXME|HACK

[dirs:./templates]
TODO|FIXME|HACK
"""

JS_RULES = """\
src/**/*.js
!**/*.min.js
[dirs:./src]
console\\.log
"""

GLOBAL_RULES = """\
*.cfg
[dirs:./configs]
GLOBAL-ONLY
"""

CONFIG = """
[notes]
context_cache_s = 10.0

[metrics]
snapshot_interval_s = 1.0
"""


def _layout(base: Path) -> dict[str, str]:
    """The bucket's context files and rule files, and the global profile; the env that finds it."""
    bucket = base / "bucket"
    for rel, text in {
        "docs/guide.md": "# Guide\n",
        "docs/api/ref.md": "# Ref\n",
        "docs/drafts/wip.md": "# WIP\n",
        "notes.txt": "plain\n",
        "configs/app.yaml": "name: app\nport: 80\n# TODO: move to env\nhost: x\nuser: y\n",
        "configs/db.ini": "[db]\n; FIXME password in clear\n",
        "templates/page.html": "<p>\n<!-- HACK: inline style -->\n</p>\n",
        "src/lib.js": "export const a = 1;\nconsole.log(a);\n",
        "src/lib.min.js": "console.log(1)\n",
        "node_modules/dep/index.js": "console.log('dep')\n",
    }.items():
        path = bucket / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (bucket / ".bucket-include").write_text(BUCKET_RULES)
    (bucket / ".js.bucket-include").write_text(JS_RULES)
    profile = base / "xdg" / "open-buckets"
    profile.mkdir(parents=True)
    (profile / ".bucket-include").write_text(GLOBAL_RULES)
    return {"XDG_CONFIG_HOME": str(base / "xdg")}


def _drop(service: RunningService, relpath: str, data: bytes) -> Path:
    staged = service.base / f".staged-{relpath.replace('/', '_')}"
    staged.write_bytes(data)
    target = service.bucket / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staged, target)
    return target


def _note(service: RunningService, relpath: str, timeout: float = 60) -> str:
    path = service.notes / f"{relpath}.obs.md"
    wait_for(path.exists, timeout, f"the note of {relpath}")
    return path.read_text()


def _section(note: str, title: str) -> str:
    """The text of `## title` up to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", note, re.S | re.M)
    assert m, f"no '## {title}' section in:\n{note}"
    return m.group(1)


def _success(service: RunningService, relpath: str) -> dict:
    """The file's one SUCCESS record (waited for: the note is on disk before the record is)."""
    found: list[dict] = []

    def written() -> bool:
        found[:] = [r for r in service.records_of("SUCCESS") if r["relativePath"] == relpath]
        return bool(found)

    wait_for(written, 30, f"the SUCCESS record of {relpath}")
    assert len(found) == 1, found
    return found[0]


def test_notes_carry_related_context_grep_results_and_content(scratch: Path) -> None:
    env = _layout(scratch)
    with RunningService(scratch, workers=2, extra_config=CONFIG, env=env) as service:
        service.wait_ready(2)
        _drop(service, "app.js", b"import x from './src/lib.js';\nconsole.log(x);\n")
        _drop(service, "readme.txt", b"Read me.\n")
        js = _note(service, "app.js")
        txt = _note(service, "readme.txt")

        # The file's text, fenced and tagged by its extension.
        assert "```javascript\nimport x from './src/lib.js';\nconsole.log(x);\n```" in _section(js, "Content")

        related = _section(txt, "Related Context")
        for listed in ("docs/guide.md", "docs/api/ref.md", "notes.txt"):
            assert listed in related
        assert "docs/drafts/wip.md" not in related  # excluded
        assert "readme.txt" not in related  # not itself
        js_related = _section(js, "Related Context")
        assert "src/lib.js" in js_related  # the .js rules on top
        assert "src/lib.min.js" not in js_related and "node_modules" not in js_related
        assert "*.cfg" not in js_related  # (a pattern is never listed as a file)

        grep = _section(txt, "Grep Results")
        # Grouped by file with line numbers, from both sections of the bucket's file.
        assert "configs/app.yaml" in grep and "configs/db.ini" in grep and "templates/page.html" in grep
        assert "TODO: move to env" in grep and "FIXME password in clear" in grep
        assert re.search(r"\b3\b", grep)  # the TODO is line 3 of app.yaml
        assert "port: 80" in grep and "host: x" in grep  # two lines of context around it
        assert "GLOBAL-ONLY" not in grep  # the bucket's [dirs:./configs] wins over the global one whole
        js_grep = _section(js, "Grep Results")
        assert "console.log(a);" in js_grep  # [dirs:./src] from .js.bucket-include

        record = _success(service, "readme.txt")
        context = record["context"]["bucketInclude"]
        assert context["relatedFiles"] >= 3 and context["grepDirs"] == 2 and context["grepMatches"] >= 3
        assert context["grepTool"] in ("rg", "grep", "python") and context["problems"] == []

        # ob-ctl config --for FILE: the merged rules with where each came from.
        out = cli(
            "-m", "coordinator.ctl", "--state-dir", str(service.state), "config", "--for",
            str(service.bucket / "src" / "new.js"),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert f"found   {service.bucket}/.js.bucket-include" in out.stdout
        assert f"src/**/*.js  ({service.bucket}/.js.bucket-include:1)" in out.stdout
        assert f"*.cfg  ({scratch}/xdg/open-buckets/.bucket-include:1)" in out.stdout
        assert "[dirs:src]" in out.stdout and "[dirs:configs]" in out.stdout
        as_json = json.loads(
            cli(
                "-m",
                "coordinator.ctl",
                "--state-dir",
                str(service.state),
                "config",
                "--json",
                "--for",
                str(service.bucket / "x.txt"),
            ).stdout  # fmt: skip
        )
        assert [r["pattern"] for r in as_json["includes"]] == ["docs/**/*.md", "*.txt", "*.cfg"]
        outside = cli(
            "-m", "coordinator.ctl", "--state-dir", str(service.state), "config", "--for", "/etc/hosts"
        )
        assert outside.returncode == 1 and "in no bucket" in outside.stderr

        # CONFIG_DUMP.md lists every rule with its file and line.
        dump = service.state / "reports" / "CONFIG_DUMP.md"
        wait_for(lambda: dump.exists() and "Bucket include rules" in dump.read_text(), 30, "CONFIG_DUMP.md")
        text = dump.read_text()
        assert (
            "`src/**/*.js`" in text
            and "`!docs/drafts/**`" in text
            and "[dirs:configs] TODO\\|FIXME\\|HACK" in text  # (| escaped in a table cell)
        )


def test_bad_rules_are_configuration_errors_and_edits_apply_to_the_next_file(scratch: Path) -> None:
    env = _layout(scratch)
    (scratch / "bucket" / ".bucket-include").write_text(
        "*.txt\n[dirs:../../etc]\npasswd\n[bogus]\nwhatever\n[dirs:./configs]\n(unclosed\nTODO\n"
    )
    with RunningService(scratch, workers=2, extra_config=CONFIG, env=env) as service:
        service.wait_ready(2)
        _drop(service, "first.txt", b"one\n")
        note = _note(service, "first.txt")
        assert "notes.txt" in _section(note, "Related Context")  # the good lines still apply
        grep = _section(note, "Grep Results")
        assert "TODO: move to env" in grep and "root:" not in note

        def one_error() -> list[dict]:
            found = [r for r in service.records_of("ERROR") if r["category"] == "Configuration"]
            return found if found else []

        wait_for(one_error, 30, "a Configuration ERROR record")
        (error,) = one_error()
        assert error["relativePath"] == ".bucket-include" and error["error"]["code"] == "EBADRULE"
        message = error["error"]["message"]
        assert "line 2:" in message and "line 4:" in message and "line 7:" in message
        assert str(service.bucket / ".bucket-include") in message
        assert not (service.notes / ".bucket-include.obs.md").exists()  # configuration, never input

        # The same version of the file is reported once, however many files use it.
        _drop(service, "second.txt", b"two\n")
        _note(service, "second.txt")
        assert len(one_error()) == 1

        # Edited at run time: the next file gets the new rules (and the fixed file no new error).
        (service.bucket / ".bucket-include").write_text("docs/**\n")
        _drop(service, "third.txt", b"three\n")
        third = _note(service, "third.txt")
        assert "docs/guide.md" in _section(third, "Related Context")
        assert "notes.txt" not in _section(third, "Related Context")
        assert "## Grep Results" not in third or "TODO" not in _section(third, "Grep Results")
        status = service.status()
        assert status["jobs"]["failed"] == 1  # the rule file's one record; every dropped file succeeded


def test_symlinked_dirs_are_never_searched(scratch: Path) -> None:
    env = _layout(scratch)
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TODO: the secret is 42\n")
    (scratch / "bucket" / "linked").symlink_to(outside)
    (scratch / "bucket" / "docs" / "link.md").symlink_to(outside / "secret.txt")
    (scratch / "bucket" / ".bucket-include").write_text(
        "**/*.md\n[dirs:./linked]\nTODO\n[dirs:./configs]\nTODO\n"
    )
    with RunningService(scratch, workers=1, extra_config=CONFIG, env=env) as service:
        service.wait_ready(1)
        _drop(service, "a.txt", b"a\n")
        note = _note(service, "a.txt")
        assert "secret is 42" not in note
        assert "docs/link.md" not in _section(note, "Related Context")  # a symlink is never listed
        assert "TODO: move to env" in _section(note, "Grep Results")  # the real directory still is
        problems = _success(service, "a.txt")["context"]["bucketInclude"]["problems"]
        assert any("linked" in p for p in problems)


def test_a_burst_runs_the_directory_scans_a_handful_of_times(scratch: Path) -> None:
    env = _layout(scratch)
    (scratch / "bucket" / "burst").mkdir()
    with RunningService(scratch, workers=2, extra_config=CONFIG, env=env) as service:
        service.wait_ready(2)
        staged = scratch / "staged"
        staged.mkdir()
        for i in range(1000):
            (staged / f"f{i:04d}.txt").write_text(f"file {i}\n")
        for i in range(1000):
            os.rename(staged / f"f{i:04d}.txt", service.bucket / "burst" / f"f{i:04d}.txt")
        layout = sum(1 for p in service.bucket.rglob("*") if p.is_file() and not p.name.endswith("-include"))
        service.wait_terminal(layout, timeout=180)  # the layout's 10 files and the burst's 1,000
        records = service.records_of("SUCCESS")
        burst = [r for r in records if r["relativePath"].startswith("burst/")]
        assert len(burst) == 1000 and len(records) == layout
        assert all(r["context"]["bucketInclude"]["grepDirs"] == 2 for r in burst)
        assert all(r["context"]["bucketInclude"]["grepMatches"] >= 3 for r in burst)
        # (Counted over every record: the layout's files, first in, may pay for the burst's scans.)
        scans = sum(r["context"]["bucketInclude"]["scanned"] for r in records)
        # About one per worker per cache period (10 s), not one per file.
        assert 1 <= scans <= 20, scans
