"""The coordinator's side of `.bucket-include`: finding and reading rule files safely, reusing the merged
rules while no file changes, turning bad lines into one rules job per file version, and explaining the
rules for one file (`ob-ctl config --for`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coordinator.config import Config
from coordinator.include_rules import (
    RECHECK_S,
    IncludeRules,
    JobContexts,
    bucket_rule_files,
    explain_file,
    owner,
    read_rule_file,
    rule_relpath,
)
from coordinator.queue import JobQueue

pytestmark = pytest.mark.timeout(30)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    bucket = tmp_path / "bucket"
    profile = tmp_path / "xdg" / "open-buckets"
    bucket.mkdir()
    profile.mkdir(parents=True)
    (bucket / ".bucket-include").write_text(
        "docs/**/*.md\n!docs/drafts/**\n[dirs:./configs]\nTODO|FIXME|HACK\n"
    )
    (bucket / ".js.bucket-include").write_text("src/**/*.js\n!**/*.min.js\n[dirs:./templates]\nTODO\n")
    (profile / ".bucket-include").write_text("*.txt\n[dirs:./configs]\nGLOBAL\n")
    return bucket, profile


def test_merged_most_specific_first_with_sources(layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    loaded = IncludeRules(str(profile)).load(str(bucket), "src/app.js")
    assert loaded.wire is not None
    assert loaded.wire.includes == ["src/**/*.js", "docs/**/*.md", "*.txt"]
    assert loaded.wire.excludes[:2] == ["**/*.min.js", "docs/drafts/**"]
    assert "**/node_modules/**" in loaded.wire.excludes  # the defaults come last
    # The bucket's own [dirs:./configs] wins over the global profile's; the .js file adds templates.
    assert {d.path: d.patterns for d in loaded.wire.dirs} == {
        "templates": ["TODO"],
        "configs": ["TODO|FIXME|HACK"],
    }
    assert [r.where for r in loaded.rules.includes] == [
        f"{bucket}/.js.bucket-include:1",
        f"{bucket}/.bucket-include:1",
        f"{profile}/.bucket-include:1",
    ]


def test_no_rule_file_means_no_context(tmp_path: Path) -> None:
    loaded = IncludeRules(str(tmp_path / "none")).load(str(tmp_path), "a.txt")
    assert loaded.wire is None and loaded.files == ()


def test_rules_are_reused_until_a_file_changes(layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    clock = Clock()
    rules = IncludeRules(str(profile), clock)
    first = rules.load(str(bucket), "a.md")
    reads = rules.reads
    for _ in range(100):
        clock.now += 1.5 * RECHECK_S  # every load checks the disk again
        assert rules.load(str(bucket), "b.md") is first
    assert rules.reads == reads  # a burst stats the files and reads nothing
    (bucket / ".bucket-include").write_text("*.md\n")
    assert rules.load(str(bucket), "c.md") is first  # within RECHECK_S of the last check: not looked at
    clock.now += 1.5 * RECHECK_S
    changed = rules.load(str(bucket), "c.md")
    assert changed.wire is not None and changed.wire.includes[0] == "*.md"
    assert changed.wire.key != first.wire.key  # type: ignore[union-attr]
    assert rules.reads == reads + 1  # only the changed file was read again


def test_same_rules_same_key(layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    a = IncludeRules(str(profile)).load(str(bucket), "x.md").wire
    b = IncludeRules(str(profile)).load(str(bucket), "y.md").wire
    c = IncludeRules(str(profile)).load(str(bucket), "y.js").wire
    assert a is not None and b is not None and c is not None
    assert a.key == b.key != c.key


def test_symlinked_rule_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0\n")
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / ".bucket-include").symlink_to(secret)
    with pytest.raises(ValueError, match="symlink"):
        read_rule_file(str(bucket / ".bucket-include"))
    loaded = IncludeRules(str(tmp_path / "none")).load(str(bucket), "a.txt")
    assert [p.message for p in loaded.rules.problems] == [
        "cannot read: a symlink; rule files are never followed"
    ]
    assert loaded.wire is not None and loaded.wire.includes == []  # nothing of the target was read


def test_fifo_and_huge_rule_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".bucket-include")
    with pytest.raises(ValueError, match="not a regular file"):
        read_rule_file(str(tmp_path / ".bucket-include"))
    big = tmp_path / "big"
    big.write_text("*.md\n" * 100_000)
    with pytest.raises(ValueError, match="larger than"):
        read_rule_file(str(big))


def _contexts(tmp_path: Path, bucket: Path, profile: Path) -> tuple[JobContexts, JobQueue]:
    config = Config.model_validate(
        {"buckets": [{"name": "b", "path": str(bucket)}], "notes": {"global_profile": str(profile)}}
    )
    queue = JobQueue(tmp_path / "queue.db")
    clock = Clock()

    def moving() -> float:  # each dispatch comes RECHECK_S after the last: every one checks the disk
        clock.now += 1.5 * RECHECK_S
        return clock.now

    return JobContexts(config, queue, moving), queue


def _job(queue: JobQueue, bucket: Path, relpath: str):  # type: ignore[no-untyped-def]
    job = queue.add(("b", relpath, 1, 1, 1), path=bucket / relpath, relpath=relpath, output_path="/x")
    assert job is not None
    return job


def test_bad_lines_queue_one_rules_job_per_file_version(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    (bucket / ".bucket-include").write_text("*.md\n[dirs:../../etc]\npasswd\n[nope]\n(unclosed\n")
    contexts, queue = _contexts(tmp_path, bucket, profile)
    wire = contexts.for_job(_job(queue, bucket, "a.md"))
    assert wire is not None and "*.md" in wire.includes  # the good lines still apply
    assert all(d.path != "../../etc" for d in wire.dirs)
    contexts.for_job(_job(queue, bucket, "b.md"))  # same version: not queued twice
    rules_jobs = queue.take_not_files()
    assert [(j.kind, j.relpath) for j in rules_jobs] == [("rules", ".bucket-include")]
    problems = contexts.problems_of(rules_jobs[0])
    assert [p.line for p in problems] == [2, 4]  # the dirs path, then the unknown section (its lines skipped)
    # A new version of the file with a problem is a new rules job.
    (bucket / ".bucket-include").write_text("[dirs:/etc]\nroot\n")
    contexts.for_job(_job(queue, bucket, "c.md"))
    assert [j.relpath for j in queue.take_not_files()] == [".bucket-include"]
    queue.close()


def test_problems_read_again_after_a_restart(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    (bucket / ".bucket-include").write_text("[dirs:/etc]\nroot\n")
    contexts, queue = _contexts(tmp_path, bucket, profile)
    contexts.for_job(_job(queue, bucket, "a.md"))
    (job,) = queue.take_not_files()
    contexts.pending.clear()  # what a restart forgets
    assert [p.line for p in contexts.problems_of(job)] == [1]
    queue.close()


def test_rules_off(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    contexts, queue = _contexts(tmp_path, bucket, profile)
    contexts.enabled = False
    assert contexts.for_job(_job(queue, bucket, "a.md")) is None
    queue.close()


def test_explain_file_and_owner(layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    roots = {"b": str(bucket), "inner": str(bucket / "inner")}
    assert owner(roots, str(bucket / "inner" / "x.md")) == ("inner", str(bucket / "inner"), "x.md")
    assert owner(roots, "/elsewhere/x.md") is None
    found = explain_file(IncludeRules(str(profile)), {"b": str(bucket)}, str(bucket / "src" / "app.js"))
    assert found["bucket"] == "b" and found["relpath"] == "src/app.js" and found["applies"]
    assert [f["exists"] for f in found["rule_files"]] == [True, False, True, True]
    assert found["dirs"][0]["where"].endswith(".js.bucket-include:3")
    with pytest.raises(ValueError, match="in no bucket"):
        explain_file(IncludeRules(str(profile)), {"b": str(bucket)}, "/elsewhere/x.md")


def test_bucket_rule_files_for_the_config_dump(layout: tuple[Path, Path]) -> None:
    bucket, profile = layout
    files = bucket_rule_files(str(bucket), str(profile))
    assert [Path(f.source).name for f in files] == [
        ".bucket-include",
        ".js.bucket-include",
        ".bucket-include",
    ]
    assert rule_relpath(str(bucket), files[1].source) == ".js.bucket-include"
    assert rule_relpath(str(bucket), files[2].source) == files[2].source  # the global one: absolute


def test_the_wire_bounds_hold_whatever_the_files_say(tmp_path: Path) -> None:
    lines = [f"inc{i}/*.md" for i in range(700)] + [f"!exc{i}/**" for i in range(700)]
    lines += [f"[dirs:./d{i}]\nTODO" for i in range(80)]
    (tmp_path / ".bucket-include").write_text("\n".join(lines) + "\n")
    wire = IncludeRules(str(tmp_path / "none")).load(str(tmp_path), "a.md").wire
    assert wire is not None  # (a ContextRules past its bounds would not validate)
    assert len(wire.includes) == 512 and wire.includes[0] == "inc0/*.md"
    assert len(wire.excludes) == 512 and wire.excludes[-1] == "*.log"  # the defaults are kept
    assert len(wire.dirs) == 64
