"""The error and success trackers as an operator uses them, after a short real run with good and bad files:
`ob-ctl report --group-by type`, `ob-ctl errors resolve` (through the coordinator), `errors --unresolved`
and `errors stats` (read from the queue database, beside the service and after it stopped). Every figure is
checked against the record files the run wrote."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from coordinator.ctl import EXIT_UNREACHABLE
from tests.e2e.test_ctl_jobs import ctl, ctl_json, one_line_error
from tests.harness import RunningService, wait_for

pytestmark = pytest.mark.timeout(120)

GOOD = {
    "a.txt": b"alpha\n",
    "b.txt": b"beta beta\n",
    "data.json": b'{"a": 1}',
    "readme.md": b"# Title\n\ntext\n",
}
# A zip's magic and then garbage: the archive skill refuses it (FileContent, ECORRUPT); deterministic.
CORRUPT_ZIP = b"PK\x03\x04" + b"\x00" * 64


def test_report_and_resolving_errors_after_a_real_run(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        svc.wait_ready(2)
        for name, data in GOOD.items():
            (svc.bucket / name).write_bytes(data)
        (svc.bucket / "broken.zip").write_bytes(CORRUPT_ZIP)
        os.symlink("/etc/hosts", svc.bucket / "link")  # FileAccess, recorded without a worker
        wait_for(
            lambda: ctl_json(svc.state, "report")["overall"]["processed"] == 6, 60, "six indexed records"
        )

        successes, failures = svc.records_of("SUCCESS"), svc.records_of("ERROR")
        assert len(successes) == 4 and len(failures) == 2
        assert not any("validation" in r for r in successes + failures)  # every record passed its schema
        report = ctl_json(svc.state, "report", "--group-by", "type")
        check_report(report, successes, failures)

        # The ERROR records, as `errors` lists them: category, component, severity, not resolved.
        rows = {r["relpath"]: r for r in ctl_json(svc.state, "errors")}
        assert {n: (r["category"], r["component"], r["severity"]) for n, r in rows.items()} == {
            "broken.zip": ("FileContent", "worker", "INFO"),
            "link": ("FileAccess", "watcher", "WARNING"),
        }
        assert not any(r["resolved"] for r in rows.values())
        link, zipped = rows["link"], rows["broken.zip"]

        # Refusals: one line, exit 1, nothing resolved.
        done_job = next(r["id"] for r in ctl_json(svc.state, "jobs", "--state", "done"))
        one_line_error(
            ctl(svc.state, "errors", "resolve", str(done_job)), 1, "only ERROR records can be resolved"
        )
        one_line_error(ctl(svc.state, "errors", "resolve", "9999"), 1, "no record of job 9999")
        assert len(ctl_json(svc.state, "errors", "--unresolved")) == 2

        # By job id (all of that job's ERROR records), then by record name.
        by_id = ctl(svc.state, "errors", "resolve", str(link["job_id"]))
        assert by_id.returncode == 0, by_id.stderr
        assert by_id.stdout.strip() == f"resolved 1 ERROR record: {link['name']}"
        assert [r["relpath"] for r in ctl_json(svc.state, "errors", "--unresolved")] == ["broken.zip"]
        by_name = ctl_json(svc.state, "errors", "resolve", zipped["name"], str(link["job_id"]))
        assert by_name == {"resolved": [zipped["name"]], "already": [link["name"]]}
        assert ctl_json(svc.state, "errors", "--unresolved") == []
        table = ctl(svc.state, "errors").stdout.splitlines()
        assert table[0].split()[-1] == "RESOLVED" and all(line.rstrip().endswith("yes") for line in table[1:])
        assert svc.stop() == 0
    assert "fails its schema" not in svc.log()

    # The service is gone: the same answers, from the state dir.
    after = ctl_json(svc.state, "report", "--group-by", "type")
    assert after.pop("until") >= report.pop("until") and after == report
    stats = ctl_json(svc.state, "errors", "stats", "--since", "1h")
    assert (stats["total"], stats["open"], stats["resolved"], stats["superseded"]) == (2, 0, 2, 0)
    assert stats["by_category"] == {"FileAccess": 1, "FileContent": 1}
    assert stats["by_component"] == {"watcher": 1, "worker": 1}
    assert stats["by_severity"] == {"INFO": 1, "WARNING": 1} and stats["by_bucket"] == {"bucket": 2}
    assert sum(stats["trend"]["counts"]) == 2 and stats["trend"]["counts"][-1] == 2  # both just now
    text = ctl(svc.state, "errors", "stats")
    assert text.returncode == 0 and text.stdout.startswith("2 errors (all time): 0 open, 2 resolved")
    text = ctl(svc.state, "report", "--group-by", "type")
    assert text.returncode == 0 and "PROCESSED" in text.stdout and "(none)" in text.stdout


def check_report(
    report: dict[str, Any], successes: list[dict[str, Any]], failures: list[dict[str, Any]]
) -> None:
    """The report's figures, recomputed from the record files."""
    durations = [r["processing"]["duration"] for r in successes]
    assert report["group_by"] == "type"
    assert report["overall"] == {
        "processed": 6,
        "successful": 4,
        "failed": 2,
        "quarantined": 0,
        "success_rate": round(4 / 6, 4),
        "avg_duration_s": pytest.approx(statistics.mean(durations), abs=1e-6),
        "bytes": sum(len(data) for data in GOOD.values()),
    }
    types = Counter(r["processing"]["fileType"] for r in successes)
    groups = {g["group"]: g for g in report["groups"]}
    assert set(groups) == {*types, None}
    for file_type, count in types.items():
        group = groups[file_type]
        assert (group["processed"], group["successful"], group["failed"]) == (count, count, 0)
        sizes = [
            r["processing"]["bytesProcessed"] for r in successes if r["processing"]["fileType"] == file_type
        ]
        assert group["bytes"] == sum(sizes) and group["success_rate"] == 1.0
    failed = groups[None]  # failures carry no file type
    assert (failed["processed"], failed["failed"], failed["success_rate"]) == (len(failures), 2, 0.0)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["report", "--group-by", "colour"], "invalid choice"),
        (["report", "--since", "soon"], "bad duration"),
        (["errors", "resolve"], "ID"),
        (["errors", "resolve", "x"], "not a job id or record name"),
        (["errors", "stats", "--since", "5x"], "bad duration"),
    ],
)
def test_usage_errors_exit_2_with_one_line(scratch: Path, argv: list[str], fragment: str) -> None:
    one_line_error(ctl(scratch, *argv), 2, fragment)


def test_without_a_coordinator_or_a_queue_it_says_so_in_one_line(scratch: Path) -> None:
    nothing = scratch / "nothing"
    one_line_error(ctl(nothing, "errors", "resolve", "4"), EXIT_UNREACHABLE, "no coordinator is running")
    for command in (["report"], ["errors", "stats"], ["errors", "--unresolved"]):
        one_line_error(ctl(nothing, *command, "--json"), EXIT_UNREACHABLE, f"no queue database in {nothing}")
