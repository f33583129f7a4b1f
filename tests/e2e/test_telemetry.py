"""Metrics, alerts and reports from a real short run, read back from disk and checked against the records:
METRICS-*.json snapshots, the four markdown reports (front matter parsed as YAML), an alert raised and
cleared, and `ob-ctl metrics`."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import RunningService, wait_for

pytestmark = pytest.mark.timeout(120)

CONFIG = """
[metrics]
snapshot_interval_s = 1.0
retention = 5

[alerts]
queue_depth = 3
"""


def front_matter(path: Path) -> dict[str, Any]:
    text = path.read_text()
    assert text.startswith("---\n")
    data = yaml.safe_load(text.split("---\n", 2)[1])
    assert isinstance(data, dict)
    return data


def latest_snapshot(svc: RunningService) -> dict[str, Any] | None:
    snaps = sorted((svc.state / "metrics").glob("METRICS-*.json"))
    return json.loads(snaps[-1].read_text()) if snaps else None


def test_snapshots_and_reports_agree_with_the_records(scratch: Path) -> None:
    with RunningService(scratch, workers=2, extra_config=CONFIG) as svc:
        svc.wait_ready(2)
        for i in range(12):
            (svc.bucket / f"good{i}.txt").write_text(f"line {i}\nTODO something\n")
        os.mkfifo(svc.bucket / "pipe")  # a FileAccess ERROR record, never opened
        os.symlink("/etc/hostname", svc.bucket / "link")
        svc.wait_terminal(14, 60)

        def caught_up() -> bool:
            snap = latest_snapshot(svc)
            return snap is not None and snap["counters"]["files_processed"] == 14

        wait_for(caught_up, 30, "a snapshot with every file in it")
        snap = latest_snapshot(svc)
        assert snap is not None
        successes, errors = svc.records_of("SUCCESS"), svc.records_of("ERROR")
        assert snap["counters"]["successes"] == len(successes) == 12
        assert snap["counters"]["failures"] == len(errors) == 2
        assert snap["errors_by_category"] == dict(Counter(e["category"] for e in errors)) == {"FileAccess": 2}
        hist = snap["histograms"]["file_size_bytes"]  # the bytes of the files processed
        assert hist["count"] == 12 and hist["p50"] <= hist["p90"] <= hist["p95"] <= hist["p99"] <= hist["max"]
        assert "queue_depth.done" in snap["gauges"] and snap["gauges"]["workers"]["value"] == 2
        assert len(list((svc.state / "metrics").glob("METRICS-*.json"))) <= 5  # retention

        reports = svc.state / "reports"
        names = {"RUN_SUMMARY.md", "METRICS_SNAPSHOT.md", "CONTEXT_TREE.md", "CONFIG_DUMP.md"}
        # (written on a thread of their own, after the snapshot)
        wait_for(lambda: reports.is_dir() and names <= {p.name for p in reports.iterdir()}, 30, "the reports")
        summary = front_matter(reports / "RUN_SUMMARY.md")
        assert summary["type"] == "open-buckets-run-summary" and summary["health"] in ("healthy", "degraded")
        for name in names | {"CONTEXT_TREE-bucket.md"}:
            front_matter(reports / name)  # valid YAML, every one
        assert "good0.txt" in (reports / "CONTEXT_TREE-bucket.md").read_text()
        assert "[[METRICS_SNAPSHOT]]" in (reports / "RUN_SUMMARY.md").read_text()
        dump = (reports / "CONFIG_DUMP.md").read_text()
        assert "snapshot_interval_s" in dump and "file:" in dump

        live = svc.ctl("metrics")
        assert live["counters"]["files_processed"] == 14 and live["alerts"] == []


def test_an_alert_is_raised_shown_and_cleared(scratch: Path) -> None:
    with RunningService(scratch, workers=1, extra_config=CONFIG) as svc:
        svc.wait_ready(1)
        svc.ctl("drain")
        for i in range(5):
            (svc.bucket / f"q{i}.txt").write_text("x\n")
        wait_for(lambda: svc.status()["alerts"], 30, "the queue_depth alert")
        status = svc.status()
        assert status["alerts"][0]["name"] == "queue_depth" and status["health"] == "degraded"
        assert any("alert queue_depth" in r for r in status["reasons"])
        wait_for(lambda: (latest_snapshot(svc) or {}).get("alerts"), 30, "the alert in a snapshot")
        svc.ctl("resume")
        svc.wait_terminal(5, 30)
        wait_for(lambda: not svc.status()["alerts"], 30, "the alert to clear")
        assert svc.status()["health"] == "healthy"
        assert "alert queue_depth: 5 jobs queued" in svc.log() and "alert queue_depth cleared" in svc.log()
