"""The reports (coordinator/reports/) and config provenance: front matter that parses back, numbers equal
to their inputs, hostile names that cannot break a table, the front matter or a link, a bounded bucket walk
that never follows a symlink, and sources marked default / file / cli."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.config import load_config
from coordinator.provenance import config_file, config_sources, flatten, source_of, validation_error
from coordinator.reports import markdown as md
from coordinator.reports.config_dump import Check, render_config_dump, sandbox_checks
from coordinator.reports.context_tree import (
    context_tree_link,
    context_tree_name,
    grep_counts_from_records,
    grep_tags_for,
    render_context_index,
    render_context_tree,
    skip_dirs,
    walk_bucket,
)
from coordinator.reports.metrics_snapshot import Capacity, drain_eta_s, render_metrics_snapshot
from coordinator.reports.run_summary import render_run_summary
from protocol.sandbox import LayerReport

#: Names a bucket can hold (or a config can give a bucket), each aimed at one of the ways to break a note.
HOSTILE = [
    "a|b",
    "line\nbreak",
    "]]",
    "---",
    "`tick` ``two``",
    "#leading",
    "x\\|y",
    "back\\",
    "[[evil]] and [[x|y]]",
    "bad\udcff-bytes",
    "sep\u2028arator\x85",
    "%%comment%% ==mark== $math$",
    "<b>html</b> *em* _em_",
    "yes",
    "",
]

# -- helpers --------------------------------------------------------------------------------------------


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The parsed front matter and the body; the front matter must be valid YAML and a mapping."""
    assert text.startswith("---\n")
    end = text.index("\n---\n", 4)
    data = yaml.safe_load(text[4:end])
    assert isinstance(data, dict)
    return data, text[end + 5 :]


def row_cells(row: str) -> list[str]:
    """A GFM table row split as cmark-gfm splits it: a backslash escapes the next ASCII punctuation
    character (so `\\\\|` is an escaped backslash and then a border), any other pipe is a border."""
    assert row.startswith("|"), row
    cells: list[str] = []
    current = ""
    i = 0
    while i < len(row):
        ch = row[i]
        if ch == "\\" and i + 1 < len(row) and row[i + 1] in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~":
            current += row[i : i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(current)
            current = ""
        else:
            current += ch
        i += 1
    assert current.strip() == "", f"row does not end with a border: {row!r}"
    return cells[1:]  # before the leading pipe: nothing


def tables(body: str) -> Iterator[list[str]]:
    """Each table in the body (outside fenced blocks): its lines."""
    block: list[str] = []
    fence: str | None = None
    for line in [*body.split("\n"), ""]:
        if fence is not None:
            if line.startswith(fence) and line.strip("`") == "":
                fence = None
            continue
        if line.startswith("```"):
            fence = line[: len(line) - len(line.lstrip("`"))]
            continue
        if line.startswith("|"):
            block.append(line)
        elif block:
            yield block
            block = []


def assert_tables_intact(body: str) -> int:
    """Every row of every table has the header's cell count; returns how many tables there are."""
    count = 0
    for lines in tables(body):
        count += 1
        width = len(row_cells(lines[0]))
        assert re.fullmatch(r"\|( --- \|)+", lines[1]), lines[1]
        for line in lines[1:]:
            assert len(row_cells(line)) == width, f"{line!r} does not have {width} cells"
    return count


_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"\[\[([^\[\]|#^\\\n]+)(?:\\?\|([^\[\]|\n]+))?\]\]")


def assert_links_safe(body: str) -> None:
    """Outside code, every `[[` opens one well-formed wikilink (target without [ ] | # ^ \\), and no other
    unescaped `[[` is left."""
    text = re.sub(r"(?ms)^(`{3,}).*?^\1\s*$", "", body)
    text = _CODE.sub("", text)
    text = _LINK.sub("", text)
    assert not re.search(r"(?<!\\)\[(?<!\\)\[", text), f"stray [[ in {text!r}"
    assert "]]" not in re.sub(r"\\\]\\\]|\\\]", "", text)


def assert_no_raw_surrogates(text: str) -> None:
    text.encode("utf-8")  # a lone surrogate raises here: it could not be written as UTF-8


# -- markdown helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_front_matter_round_trips_any_string(name: str) -> None:
    text = md.front_matter(
        {
            "type": "t",
            "name": name,
            "names": [name, 1, 2.5, None, True],
            "nested": {name: 3, "yes": name, "plain": [name]},
        }
    )
    assert_no_raw_surrogates(text)
    data, _ = split_front_matter(text)
    assert data["name"] == name
    assert data["names"] == [name, 1, 2.5, None, True]
    assert data["nested"] == {name: 3, "yes": name, "plain": [name]}


def test_front_matter_numbers_and_limits() -> None:
    data, _ = split_front_matter(
        md.front_matter({"big": 1e100, "small": 1e-7, "nan": float("nan"), "n": 10**20, "empty": {}})
    )
    assert data == {"big": 1e100, "small": 1e-7, "nan": None, "n": 10**20, "empty": {}}
    with pytest.raises(TypeError):
        md.front_matter({"deep": {"a": {"b": 1}}})
    with pytest.raises(TypeError):
        md.front_matter({"obj": object()})


@pytest.mark.parametrize("name", HOSTILE)
def test_table_cells_keep_their_columns(name: str) -> None:
    rows: list[list[md.Cell]] = [
        [name, md.code(name), md.wikilink(name, name)],
        [md.text(name), md.Md(md.code(name) + " " + md.text(name)), 3],
    ]
    lines = md.table(("A", "B", "C"), rows)
    assert_no_raw_surrogates("\n".join(lines))
    assert assert_tables_intact("\n".join(lines)) == 1
    assert len(lines) == 4


def test_pipes_end_behind_an_odd_number_of_backslashes() -> None:
    # GFM pairs backslashes before it looks at the pipe: `\\|` would be a backslash and a cell border.
    for fragment in ("a|b", "a\\|b", "a\\\\|b", "|", "\\|"):
        escaped = md.cell(md.Md(fragment))
        for m in re.finditer(r"(\\*)\|", escaped):
            assert len(m.group(1)) % 2 == 1, escaped


def test_table_rows_longer_than_the_header_are_a_bug() -> None:
    with pytest.raises(ValueError):
        md.table(("a",), [["x", "y"]])
    assert md.table(("a", "b"), [["x"]])[-1] == "| x |  |"


@pytest.mark.parametrize("name", HOSTILE)
def test_links_and_tags_are_sanitized(name: str) -> None:
    link = md.wikilink(name, name)
    assert link.startswith("[[") and link.endswith("]]")
    inner = link[2:-2]
    target, _, alias = inner.partition("|")
    assert not set(target) & set("[]|#^\\\n") and target
    assert not set(alias) & set("[]|\n")
    tag = md.tag(name)
    assert tag is None or re.fullmatch(r"#[a-z0-9_/-]+", tag)
    assert md.code(name).count("\n") == 0


def test_context_links_match_the_notes() -> None:
    # Notes link to [[CONTEXT_TREE-<bucket>|<bucket>]]; the page must be where those links point.
    from worker.pipeline.note import context_link

    for name in ["inbox", "a|b", "]]", "#x", "line\nbreak", "x^y", "plain name", "ünï"]:
        assert context_tree_link(name) == context_link(name)
        assert context_tree_name(name) == context_link(name)[2:].split("|")[0] + ".md"
    # A "/" cannot be in a file name: the page and the link here replace it (the notes' link keeps it).
    assert context_tree_name("a/../../b") == "CONTEXT_TREE-a-..-..-b.md"
    long = context_tree_name("x" * 400)
    assert len(long.encode()) <= 255 and long != context_tree_name("x" * 401)


def test_text_escapes_markdown_and_cuts() -> None:
    assert md.text("*a* [[b]] #c `d` $e$ %%f%% ==g== <h>") == (
        "\\*a\\* \\[\\[b\\]\\] \\#c \\`d\\` \\$e\\$ \\%\\%f\\%\\% \\=\\=g\\=\\= \\<h\\>"
    )
    assert md.text("x" * 300, limit=10) == "x" * 9 + "…"
    assert md.text("a\nb\tc") == "a b c"
    assert md.code("a`b") == "``a`b``" and md.code("`x") == "`` `x ``"


def test_formatters() -> None:
    assert md.number(1234567) == "1,234,567"
    assert md.number(0.125) == "0.125" and md.number(2.0) == "2" and md.number(None) == "—"
    assert md.seconds(0.0123) == "12.3 ms" and md.seconds(2.5) == "2.5 s" and md.seconds(200) == "3m20s"
    assert md.seconds(7500) == "2h05m" and md.seconds(None) == "—"
    assert md.size(512) == "512 B" and md.size(1536) == "1.5 KiB"
    assert md.percent(1, 4) == "25.0 %" and md.percent(1, 0) == "—"
    assert md.utc_iso(0) == "1970-01-01T00:00:00Z"


def test_write_report_is_atomic_and_world_readable(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        path = md.write_report(tmp_path / "reports", "R.md", "one\n")
        md.write_report(tmp_path / "reports", "R.md", "two\n")
    finally:
        os.umask(old)
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path / "reports")) == ["R.md"]  # no temp file left
    for bad in ("", "../R.md", "a/b.md", ".hidden.md", "x\x00.md"):
        with pytest.raises(ValueError):
            md.write_report(tmp_path, bad, "x")


def test_write_report_never_writes_through_a_symlinked_temp(tmp_path: Path) -> None:
    # The temp name is random and opened O_EXCL|O_NOFOLLOW; the target itself is replaced, not written into.
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "R.md").symlink_to(victim)
    md.write_report(tmp_path, "R.md", "new")
    assert victim.read_text() == "keep" and not (tmp_path / "R.md").is_symlink()


# -- RUN_SUMMARY ----------------------------------------------------------------------------------------


def metrics_snapshot() -> dict[str, Any]:
    return {
        "counters": {
            "events_received": 1200,
            "events_processed": 1190,
            "files_processed": 1000,
            "successes": 950,
            "failures": 50,
            "a|b": 7,
        },
        "gauges": {"queue_depth": {"value": 40, "min_1m": 2, "max_1m": 80, "avg_1m": 33.5}},
        "histograms": {
            "processing_s": {
                "count": 1000,
                "min": 0.001,
                "max": 9.5,
                "mean": 0.2,
                "p50": 0.05,
                "p90": 0.4,
                "p95": 0.75,
                "p99": 2.5,
            },
            "queue_wait_s": {
                "count": 1000,
                "min": 0,
                "max": 30,
                "mean": 1,
                "p50": 0.5,
                "p90": 2,
                "p95": 4.5,
                "p99": 12,
            },
            "file_size_bytes": {
                "count": 1000,
                "min": 0,
                "max": 2048,
                "mean": 100,
                "p50": 80,
                "p90": 500,
                "p95": 900,
                "p99": 2000,
            },
        },
        "rates": {
            "files_processed": {"1m": 4.0, "5m": 2.0, "15m": 1.5},
            "events_received": {"1m": 5, "5m": 3, "15m": 2},
        },
        "counters_by_label": {"failures": {"FileAccess": 30, "WorkerCrash": 15, "FileContent": 5, "a|b": 0}},
        "alerts": [
            {
                "name": "queue_depth",
                "level": "warning",
                "value": 40,
                "threshold": 30,
                "since": 1000.0,
                "message": "queue | deep\n[[x]]",
            },
            {"name": "old", "level": "critical", "value": 1, "threshold": 1, "active": False},
        ],
        "errors_by_category": {"FileAccess": 30, "WorkerCrash": 15, "FileContent": 5},
    }


def status_dict(names: list[str]) -> dict[str, Any]:
    return {
        "health": "degraded",
        "reasons": ["records cannot be written: disk | full", "1 worker slot(s) failed"],
        "pid": 4242,
        "uptime_s": 3723.5,
        "dispatch": "running",
        "buckets": [{"name": n, "path": f"/srv/{n}", "output": "/notes"} for n in names],
        "parked": {"removed|one": 3},
        "workers": {"busy": 3, "ready": 1, "total": 4},
        "jobs": {"queued": 40, "running": 3, "done": 950, "failed": 45, "quarantined": 5},
    }


def error_rows(n: int, bucket: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"ERROR-2026-01-31-1200{i:02d}-{i:06d}.json",
            "job_id": i,
            "state": "failed",
            "category": "FileAccess",
            "severity": "WARNING",
            "bucket": bucket,
            "relpath": f"dir/{HOSTILE[i]}",
            "timestamp": 1_769_860_800.0 + i,
            "message": f"denied | {HOSTILE[i]}",
            "superseded": i == 1,
        }
        for i in range(n)
    ]


def test_run_summary_numbers_equal_the_inputs() -> None:
    text = render_run_summary(
        run_id="run-1",
        started=1_769_857_077.0,
        generated=1_769_860_800.5,
        status=status_dict(["inbox"]),
        metrics=metrics_snapshot(),
        bucket_counts={"inbox": {"done": 950, "failed": 45, "quarantined": 5, "queued": 37}},
        recent_errors=error_rows(7, "inbox"),
    )
    data, body = split_front_matter(text)
    assert data["type"] == "open-buckets-run-summary"
    assert data["run_id"] == "run-1" and data["health"] == "degraded" and data["uptime_s"] == 3723.5
    assert data["started"] == "2026-01-31T10:57:57Z" and data["generated"] == "2026-01-31T12:00:00Z"
    assert (data["files_processed"], data["successes"], data["failures"]) == (1000, 950, 50)
    assert data["jobs"] == status_dict([])["jobs"]
    assert "health/degraded" in data["tags"]
    assert "| `inbox` | `/srv/inbox` | 950 | 45 | 5 | 37 | 0 | [[CONTEXT_TREE-inbox\\|inbox]] |" in body
    assert "| `removed\\|one` | — | 0 | 0 | 0 | 0 | 3 | — |" in body
    expected = [
        "| Events received | 1,200 |",
        "| Files processed | 1,000 |",
        "| Successes | 950 |",
        "| Failures | 50 |",
        "| Success rate | 95.0 % |",
        "| Coordinator pid | 4242 |",
        "| **total** | 1,043 |",
        "| `FileAccess` | WARNING | 30 | 60.0 % |",
        "| ERROR | 15 |",
        "| Files/s, last 5 min | 2 files/s |",
        "| Processing time p95 | 750 ms |",
        "| Processing time p99 | 2.5 s |",
        "| Queue wait p95 | 4.5 s |",
    ]
    for line in expected:
        assert line in body, line
    assert "- records cannot be written: disk \\| full" in body
    # The last five errors, newest first, each linked to its record; not the sixth.
    assert body.count("[[ERROR-2026-01-31-") == 5 and "000005.json" not in body
    assert "[[ERROR-2026-01-31-120001-000001.json]] (superseded)" in body
    for name in ("METRICS_SNAPSHOT", "CONTEXT_TREE", "CONFIG_DUMP"):
        assert f"[[{name}]]" in body
    assert assert_tables_intact(body) >= 8
    assert_links_safe(body)


@pytest.mark.parametrize("name", HOSTILE)
def test_run_summary_survives_hostile_names(name: str) -> None:
    text = render_run_summary(
        run_id=name,
        started=0,
        generated=60,
        status={**status_dict([name, "other"]), "health": name, "reasons": [name]},
        metrics={**metrics_snapshot(), "errors_by_category": {name: 2}},
        bucket_counts={name: {"done": 1}},
        recent_errors=[
            {**row, "bucket": name, "relpath": name, "message": name, "name": name}
            for row in error_rows(5, name)
        ],
    )
    assert_no_raw_surrogates(text)
    data, body = split_front_matter(text)
    assert data["run_id"] == name and data["health"] == name
    assert_tables_intact(body)
    assert_links_safe(body)
    assert context_tree_link(name).replace("|", "\\|") in body


def test_run_summary_with_nothing_known() -> None:
    data, body = split_front_matter(
        render_run_summary(run_id="r", started=0, generated=1, status={}, metrics={})
    )
    assert data["health"] == "unknown" and data["files_processed"] is None and data["uptime_s"] is None
    assert "No buckets." in body and "No errors counted." in body and "| Files/s, last 1 min | — |" in body
    assert_tables_intact(body)


# -- METRICS_SNAPSHOT -----------------------------------------------------------------------------------


def test_metrics_snapshot_numbers_equal_the_inputs() -> None:
    text = render_metrics_snapshot(
        metrics_snapshot(), generated=1_769_860_800, capacity=Capacity(4, 3, 40), run_id="run-1"
    )
    data, body = split_front_matter(text)
    assert data["type"] == "open-buckets-metrics-snapshot" and data["run_id"] == "run-1"
    assert (data["workers"], data["busy"], data["queue_depth"]) == (4, 3, 40)
    assert data["files_per_s_5m"] == 2.0 and data["drain_eta_s"] == 20.0
    assert (
        data["alerts_active"] == 1
        and "alert/warning" in data["tags"]
        and "alert/critical" not in data["tags"]
    )
    assert data["errors_by_category"] == {"FileAccess": 30, "WorkerCrash": 15, "FileContent": 5}
    expected = [
        "| `events_received` | 1,200 |",
        "| `a\\|b` | 7 |",
        "| `queue_depth` | 40 | 2 | 33.5 | 80 |",
        "| `processing_s` | 1,000 | 1 ms | 200 ms | 50 ms | 400 ms | 750 ms | 2.5 s | 9.5 s |",
        "| `queue_wait_s` | 1,000 | 0 ms | 1 s | 500 ms | 2 s | 4.5 s | 12 s | 30 s |",
        "| `file_size_bytes` | 1,000 | 0 B | 100 B | 80 B | 500 B | 900 B | 2,000 B | 2,048 B |",
        "| `files_processed` | 4 | 2 | 1.5 |",
        "| `failures` | `WorkerCrash` | 15 |",
        "| `failures` | `a\\|b` | 0 |",
        "| `WorkerCrash` | ERROR | 15 | 30.0 % |",
        "50 errors in all.",
        "| Utilisation | 75.0 % |",
        "| Queue depth | 40 |",
        "| Time to drain the backlog | 20 s at the 5-minute rate |",
        "| `queue_depth` | warning | 40 | 30 | 1970-01-01T00:16:40Z | queue \\| deep \\[\\[x\\]\\] |",
    ]
    for line in expected:
        assert line in body, line
    assert "`old`" not in body  # an alert that is over is not listed
    assert assert_tables_intact(body) == 9
    assert_links_safe(body)


def test_metrics_snapshot_without_alerts_or_metrics() -> None:
    data, body = split_front_matter(render_metrics_snapshot({}, generated=0, capacity=Capacity(2, 0, 5)))
    assert data["alerts_active"] == 0 and data["drain_eta_s"] is None and data["run_id"] is None
    assert "Active alerts: none." in body and body.count("None.") == 4
    assert "unknown: no files processed in the last 5 minutes" in body


def test_drain_eta() -> None:
    assert drain_eta_s(0, None) == 0.0
    assert drain_eta_s(100, 0.0) is None and drain_eta_s(100, None) is None
    assert drain_eta_s(100, 4.0) == 25.0


@pytest.mark.parametrize("name", HOSTILE)
def test_metrics_snapshot_survives_hostile_metric_names(name: str) -> None:
    metrics = {
        "counters": {name: 1},
        "counters_by_label": {name: {name: 1}},
        "gauges": {name: {"value": 1}},
        "histograms": {name: {"count": 1, "p50": 1}},
        "rates": {name: {"1m": 1}},
        "alerts": [{"name": name, "level": name, "value": name, "threshold": 1, "message": name}],
        "errors_by_category": {name: 1},
    }
    text = render_metrics_snapshot(metrics, generated=0, capacity=Capacity(1, 1, 1), run_id=name)
    assert_no_raw_surrogates(text)
    data, body = split_front_matter(text)
    assert data["run_id"] == name
    assert assert_tables_intact(body) == 9
    assert_links_safe(body)


# -- CONTEXT_TREE ---------------------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    """root: 3 files at the top, sub/ with 12 files and deeper/ levels down to depth 6, a notes dir, a
    symlink to a directory outside with files in it, a symlink loop, and a FIFO."""
    root.mkdir()
    for name in ("a.txt", "b.md", "c"):
        (root / name).write_bytes(b"x" * 10)
    sub = root / "sub"
    sub.mkdir()
    for i in range(12):
        (sub / f"f{i:02d}.log").write_bytes(b"y" * i)
    deep = sub
    for level in range(5):
        deep = deep / f"d{level}"
        deep.mkdir()
    (deep / "bottom.txt").write_bytes(b"z" * 100)
    notes = root / "notes"
    notes.mkdir()
    (notes / "a.txt.obs.md").write_text("note")
    outside = root.parent / "outside"
    outside.mkdir()
    for i in range(5):
        (outside / f"secret{i}").write_text("s")
    (root / "link-out").symlink_to(outside)
    (root / "loop").symlink_to(root)
    os.mkfifo(root / "fifo")


def test_walk_counts_right_never_follows_symlinks_and_skips_service_dirs(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    make_tree(root)
    walk = walk_bucket(root, skip=[root / "notes", tmp_path / "does-not-exist"])
    assert not walk.partial and not walk.missing
    assert walk.files == 3 + 12 + 1  # not the notes, not what the links point at
    assert walk.total_bytes == 30 + sum(range(12)) + 100
    assert walk.dirs == 1 + 5 and walk.symlinks == 2 and walk.other == 1 and walk.skipped == 1
    assert walk.walked == 7 + 12 + 1 + 4 + 1 + 1  # root, sub, d0..d3 (each holds the next), d4
    assert walk.by_extension[".log"].files == 12 and walk.by_extension[".txt"].bytes == 110
    assert walk.by_extension["(none)"].files == 1
    assert "secret" not in repr(walk)
    names = [c.name for c in walk.tree.children]
    assert names[:2] == ["notes", "sub"]  # directories first
    notes = walk.tree.children[0]
    assert notes.kind == "skipped" and notes.children == []


def test_walk_refuses_a_directory_swapped_for_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone who can write to the bucket swaps sub/ for a symlink to outside/ between the listing that
    # saw sub/ as a directory and the walk going into it: the walk must not list outside/.
    from coordinator.reports import context_tree

    root = tmp_path / "bucket"
    make_tree(root)
    classify = context_tree._classify

    def swap_after_listing(entry: os.DirEntry[str]) -> Any:
        found = classify(entry)
        if entry.name == "sub":
            (root / "sub").rename(root / "sub.old")
            (root / "sub").symlink_to(tmp_path / "outside")
        return found

    monkeypatch.setattr(context_tree, "_classify", swap_after_listing)
    walk = walk_bucket(root)
    assert walk.unreadable == 1 and walk.files == 3 + 1 and "secret" not in repr(walk)  # top 3, the note
    sub = next(c for c in walk.tree.children if c.name == "sub")
    assert sub.kind == "unreadable" and sub.children == []


def test_open_dir_checks_identity_and_never_follows_a_final_symlink(tmp_path: Path) -> None:
    from coordinator.reports.context_tree import _open_dir

    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    st = real.stat()
    fd = _open_dir(str(real), (st.st_dev, st.st_ino))
    assert fd is not None
    os.close(fd)
    assert _open_dir(str(real), (st.st_dev, st.st_ino + 1)) is None
    assert _open_dir(str(tmp_path / "link"), (st.st_dev, st.st_ino)) is None
    root_fd = _open_dir(str(tmp_path / "link"), None)  # the configured root may be a symlink
    assert root_fd is not None
    os.close(root_fd)


def test_walk_bounds_depth_entries_and_total(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    make_tree(root)
    walk = walk_bucket(root, max_depth=2, max_entries_per_dir=5)
    sub = next(c for c in walk.tree.children if c.name == "sub")
    assert len(sub.children) == 5 and sub.more == 8  # d0 + 12 files, 5 shown
    d0 = sub.children[0]
    assert d0.name == "d0" and d0.children == [] and d0.hidden == 1  # depth 2: its d1 is below the limit
    assert walk.files == 16 + 1  # the stats still count everything walked (the notes dir too, unskipped)
    text = render_context_tree("bucket", walk, generated=0)
    assert "… 8 more" in text and "… 1 entries below the depth limit" in text
    assert "link-out" not in text  # the sixth entry of the root: cut
    assert "link-out -> (symlink, not followed)" in render_context_tree(
        "bucket", walk_bucket(root), generated=0
    )

    bounded = walk_bucket(root, max_total=10)
    assert bounded.partial and bounded.walked == 10
    data, body = split_front_matter(render_context_tree("bucket", bounded, generated=0))
    assert data["partial"] is True and data["entries_walked"] == 10
    assert "> [!warning] Partial" in body


def test_walk_of_a_missing_or_unreadable_bucket(tmp_path: Path) -> None:
    missing = walk_bucket(tmp_path / "nope")
    assert missing.missing and missing.files == 0
    data, body = split_front_matter(render_context_tree("nope", missing, generated=0))
    assert data["files"] == 0 and "does not exist" in body
    file = tmp_path / "file"
    file.write_text("x")
    assert walk_bucket(file).missing


def test_walk_of_a_big_bucket_stays_cheap(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    for i in range(25_000):
        os.close(os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    started = time.perf_counter()
    walk = walk_bucket(root)
    took = time.perf_counter() - started
    assert walk.partial and walk.walked == 20_000 and walk.files == 20_000
    assert walk.tree.cut and len(walk.tree.children) == 40 and walk.tree.more == 20_000 - 40
    assert took < 5, took  # ~0.1 s here; generous for a loaded CI machine
    _, body = split_front_matter(render_context_tree("big", walk, generated=0))
    assert "… 19,960 more (and more not walked: entry limit)" in body


def test_context_tree_renders_hostile_names_inside_its_fence(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    root.mkdir()
    names = [n for n in HOSTILE if n and "/" not in n] + ["```", "`" * 7 + "x", ".ext|`x`"]
    for name in names:
        try:
            (root / name).write_bytes(b"1")
        except (OSError, UnicodeEncodeError):
            pass
    (root / "x.a|b").write_bytes(b"12")
    walk = walk_bucket(root)
    text = render_context_tree(
        "in|box]]\n#x",
        walk,
        generated=0,
        grep_counts={"todo": 4, "a|b`": 2},
        grep_tags={"todo": ["Todo", "work/item"], "none": []},
    )
    assert_no_raw_surrogates(text)
    data, body = split_front_matter(text)
    assert data["bucket"] == "in|box]]\n#x" and data["files"] == walk.files
    assert data["grep_matches"] == {"todo": 4, "a|b`": 2}
    assert data["tags"] == ["openbuckets", "openbuckets/context-tree", "todo", "work/item"]
    fence = re.search(r"^(`{3,})$", body, re.M)
    assert fence is not None and len(fence.group(1)) == 8  # outgrows the 7-backtick name
    tree = body.split(fence.group(1))[1]
    assert tree.count("\n") == walk.walked + 2  # the root line, one line per entry, the closing newline
    assert "| `todo` | 4 | #todo #work/item |" in body and "| `none` | 0 | — |" in body
    assert "#todo #work/item" in body.split("## Tags")[1]
    assert_tables_intact(body)
    assert_links_safe(body)


def test_context_index_links_every_bucket(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    make_tree(root)
    walks = {"inbox": walk_bucket(root), "a|b": walk_bucket(tmp_path / "gone")}
    data, body = split_front_matter(
        render_context_index(walks, generated=0, grep_counts={"inbox": {"todo": 3, "fixme": 2}})
    )
    assert data["buckets"] == ["inbox", "a|b"]
    assert "| [[CONTEXT_TREE-inbox\\|inbox]] |" in body and "[[CONTEXT_TREE-a-b\\|a-b]]" in body
    assert f"| {walks['inbox'].files} | " in body and "| 5 | complete |" in body and "| missing |" in body
    assert_tables_intact(body)
    assert_links_safe(body)


def test_grep_inputs_from_config_and_records(tmp_path: Path) -> None:
    config = load_config(
        None,
        {
            "buckets": [{"path": str(tmp_path / "one")}, {"path": str(tmp_path / "two")}],
            "grep": [
                {"name": "todo", "regex": "TODO", "tags": ["todo"]},
                {"name": "secret", "regex": "key", "tags": ["sec"], "buckets": ["two"]},
            ],
        },
    )
    assert grep_tags_for(config, "one") == {"todo": ["todo"]}
    assert grep_tags_for(config, "two") == {"todo": ["todo"], "secret": ["sec"]}
    records = [
        {"watchDir": "one", "context": {"grepMatches": [{"rule": "todo", "line": 1}, {"rule": "todo"}]}},
        {"watchDir": "two", "context": {"grepMatches": [{"rule": "secret"}, {"rule": "todo"}]}},
        {"watchDir": "one", "context": {}},
        {"watchDir": "one"},
    ]
    assert grep_counts_from_records(records, "one") == {"todo": 2}
    assert grep_counts_from_records(records) == {"todo": 3, "secret": 1}
    skipped = skip_dirs(config)
    assert (
        config.service.state_dir.absolute() in skipped and config.bucket_output(config.buckets[1]) in skipped
    )


# -- CONFIG_DUMP and provenance -------------------------------------------------------------------------


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    (tmp_path / "inbox").mkdir()
    path = tmp_path / "c.toml"
    path.write_text(
        "[service]\nworkers = 2\nlog_level = 'DEBUG'\n"
        "[watcher]\ntemp_ignore = ['*.tmp']\n"
        f"[[buckets]]\nname = 'inbox'\npath = '{tmp_path / 'inbox'}'\n"
        "[[grep]]\nname = 'todo'\nregex = 'TODO|FIXME'\ntags = ['todo']\n"
    )
    return path


def test_provenance_marks_default_file_and_cli(small_config: Path) -> None:
    overrides = {"service.workers": 3, "sandbox.require": ["landlock", "seccomp"]}
    sources = config_sources(small_config, overrides)
    file = f"file:{small_config}"
    assert sources == {
        "service.workers": "cli",
        "service.log_level": file,
        "watcher.temp_ignore": file,
        "buckets[0].name": file,
        "buckets[0].path": file,
        "grep[0].name": file,
        "grep[0].regex": file,
        "grep[0].tags": file,
        "sandbox.require": "cli",
    }
    assert source_of("service.output", sources) == "default"
    assert source_of("buckets[0].patterns", sources) == "default"  # left out of the bucket's table
    assert source_of("service.log_level", sources) == file


def test_provenance_a_cli_bucket_list_replaces_the_files(small_config: Path, tmp_path: Path) -> None:
    sources = config_sources(small_config, {"buckets": [{"path": str(tmp_path / "x")}]})
    assert sources["buckets[0].path"] == "cli"
    assert "buckets[0].name" not in sources  # derived from the path: a default, not the file's name
    assert source_of("buckets[0].name", sources) == "default"


def test_provenance_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config/openbuckets.toml here
    assert config_file(None) is None
    assert config_sources(None, {"service.workers": 2}) == {"service.workers": "cli"}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "openbuckets.toml").write_text("[service]\nworkers = 5\n")
    assert config_file(None) == Path("config/openbuckets.toml")
    assert config_sources(None) == {"service.workers": "file:config/openbuckets.toml"}


def test_provenance_of_a_broken_file_and_validation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[service\n")
    assert config_sources(bad, {"service.workers": 2}) == {"service.workers": "cli"}
    error = validation_error(bad)
    assert error is not None and "invalid TOML" in error and "\n" not in error
    assert validation_error(tmp_path / "missing.toml") == f"{tmp_path / 'missing.toml'}: file not found"


def test_flatten_splits_tables_and_keeps_plain_lists() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "l": [{"x": 1}, {"y": {"z": 2}}], "e": []}) == {
        "a.b": 1,
        "a.c": [1, 2],
        "l[0].x": 1,
        "l[1].y.z": 2,
        "e": [],
    }


def test_config_dump_rows_and_sources(small_config: Path) -> None:
    overrides = {"service.workers": 3}
    config = load_config(small_config, overrides)
    checks = sandbox_checks(
        [
            LayerReport("landlock", True),
            LayerReport("seccomp", False, "kernel | too old"),
            LayerReport("netns", False, "no userns"),
        ],
        ["landlock", "seccomp", "rlimits"],
    )
    text = render_config_dump(
        config,
        generated=0,
        sources=config_sources(small_config, overrides),
        config_path=small_config,
        validation_error=validation_error(small_config, overrides),
        checks=[*checks, Check("socket paths", True, "fit")],
        run_id="run-1",
    )
    data, body = split_front_matter(text)
    settings = flatten(config.model_dump(mode="json"))
    assert data["valid"] is True and data["checks_failed"] == 2 and data["settings"] == len(settings)
    assert data["sources"] == {"default": len(settings) - 8, "file": 7, "env": 0, "cli": 1}
    assert data["config_file"] == str(small_config)
    file = f"file `{small_config}`"
    expected = [
        "| `service.workers` | 3 | cli |",
        f"| `service.log_level` | `DEBUG` | {file} |",
        "| `service.output` | `notes` | default |",
        f"| `watcher.temp_ignore` | `*.tmp` | {file} |",
        f"| `grep[0].regex` | `TODO\\|FIXME` | {file} |",
        "| `buckets[0].patterns` | `*` | default |",
        "| `jobs.max_input_bytes` | 268,435,456 | default |",
        "| `jobs.processed_dir` | — | default |",
        "| `service.log_json` | no | default |",
        "| sandbox layer seccomp | **FAILED** | required, unavailable: kernel \\| too old |",
        "| sandbox layer netns | ok | optional, unavailable: no userns |",
        "| sandbox layer rlimits | **FAILED** | required, not reported by the probe |",
        "Configuration: **ok**.",
        "Start-up checks: 3 of 5 passed.",
    ]
    for line in expected:
        assert line in body, line
    assert "env" not in [row_cells(line)[2].strip() for line in body.split("\n") if line.startswith("| `")]
    assert body.count("\n| `") == len(settings)
    assert_tables_intact(body)


def test_config_dump_of_an_invalid_config_and_hostile_values(tmp_path: Path) -> None:
    data, body = split_front_matter(
        render_config_dump(None, generated=0, sources={}, validation_error="c.toml: service.workers: | bad\n")
    )
    assert data["valid"] is False and data["settings"] == 0 and data["config_file"] is None
    assert "> [!failure]" in body and "\\| bad" in body and "Start-up checks: none given." in body
    for name in HOSTILE:
        dump = {"buckets": [{"name": name, "path": f"/b/{name}", "patterns": [name, "*"]}], name or "k": name}
        data, body = split_front_matter(
            render_config_dump(
                dump,
                generated=0,
                sources={"buckets[0].name": f"file:{name}"},
                checks=[Check(name, False, name)],
            )
        )
        assert_no_raw_surrogates(body)
        assert data["settings"] == 4
        assert_tables_intact(body)
        assert_links_safe(body)
