"""Applying configuration changes (`coordinator.live.LiveConfig`) to a service made of its real parts where
they are cheap (config, jails' paths, queue, outcomes, records) and fakes where they are processes (watcher,
supervisor): refusals change nothing, a failed watch is rolled back, --cancel records each parked job."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from coordinator.config import Config, config_from
from coordinator.health import Health
from coordinator.jails import Jails
from coordinator.live import LiveConfig, Refused
from coordinator.outcomes import Outcomes
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter


class FakeWatcher:
    def __init__(self, names: list[str]) -> None:
        self.bucket_names = list(names)
        self.fail_on: str | None = None

    def add_bucket(self, name: str, root: Path, patterns: list[str], ignore: list[str]) -> None:
        if name == self.fail_on:
            raise OSError(28, "inotify watch limit reached")
        self.bucket_names.append(name)

    def remove_bucket(self, name: str) -> None:
        self.bucket_names.remove(name)

    def tune(self, settle_s: float, rescan_interval_s: float) -> None:
        pass


class FakeService:
    """What LiveConfig uses of a Service."""

    def __init__(self, base: Path, config: Config) -> None:
        self.config = config
        self.jobs = JobQueue()
        self.jails = Jails(config, base / "state" / "run")
        self.watcher = FakeWatcher([b.name for b in config.buckets])
        self.records = RecordWriter(base / "state" / "records")
        self.outcomes = Outcomes(config, self.jobs, self.records, Health())
        self.supervisor = SimpleNamespace(
            stopping=False, slots=[], all_slots=[], config_generation=0, reconfigure=lambda config, now: []
        )

    def clock(self) -> float:
        return 0.0

    def adopt_config(self, config: Config) -> None:
        self.config = config
        self.outcomes.config = config
        self.jails.reconfigure(config)


def service(base: Path, *buckets: dict[str, Any]) -> FakeService:
    data = {
        "service": {"state_dir": str(base / "state"), "output": str(base / "notes")},
        "buckets": list(buckets) or [{"name": "a", "path": str(base / "a")}],
    }
    return FakeService(base, config_from(data, "test.toml"))


def live(svc: FakeService, config_path: Path | None = None) -> LiveConfig:
    return LiveConfig(svc, config_path, {})  # type: ignore[arg-type]


def test_an_add_that_would_move_a_running_buckets_notes_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    svc = service(tmp_path)
    with pytest.raises(Refused, match=r"would move bucket 'a''s notes .* give it its own --output"):
        live(svc).add_bucket({"path": str(tmp_path / "b")})
    assert svc.watcher.bucket_names == ["a"] and [b.name for b in svc.config.buckets] == ["a"]


def test_an_added_bucket_is_watched_and_its_jobs_go_out_once_no_worker_lacks_it(tmp_path: Path) -> None:
    svc = service(tmp_path)
    row = live(svc).add_bucket({"path": str(tmp_path / "b"), "output": str(tmp_path / "notes-b")})
    assert row["name"] == "b" and row["output"] == str(tmp_path / "notes-b")
    assert not row["held_back"]  # no live worker here: nothing to wait for
    assert svc.watcher.bucket_names == ["a", "b"] and (tmp_path / "notes-b").is_dir()
    assert [b.name for b in svc.jails.config.buckets] == ["a", "b"]  # the next workers' sandbox reaches it


def test_a_root_that_cannot_be_watched_is_rolled_back(tmp_path: Path) -> None:
    a = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "notes-a")}
    svc = service(
        tmp_path, a, {"name": "b", "path": str(tmp_path / "b"), "output": str(tmp_path / "notes-b")}
    )
    path = tmp_path / "ob.toml"
    path.write_text(
        f'[service]\nstate_dir = "{tmp_path / "state"}"\noutput = "{tmp_path / "notes"}"\n'
        f'[[buckets]]\nname = "a"\npath = "{tmp_path / "a"}"\noutput = "{tmp_path / "notes-a"}"\n'
        f'[[buckets]]\nname = "c"\npath = "{tmp_path / "c"}"\noutput = "{tmp_path / "notes-c"}"\n'
    )
    svc.watcher.fail_on = "c"
    with pytest.raises(Refused, match=r"bucket 'c': cannot watch .*inotify watch limit"):
        live(svc, path).reload("test")
    assert sorted(svc.watcher.bucket_names) == ["a", "b"]  # b is watched again
    assert [b.name for b in svc.config.buckets] == ["a", "b"] and not svc.jobs.is_parked("b")


def test_an_invalid_file_is_refused_and_the_running_config_stays(tmp_path: Path) -> None:
    svc = service(tmp_path)
    path = tmp_path / "ob.toml"
    path.write_text("[service]\nworkers = 0\n")
    before = svc.config
    with pytest.raises(Refused, match=r"ob.toml: service.workers: "):
        live(svc, path).reload("test")
    assert svc.config is before


def test_remove_with_cancel_ends_each_queued_job_with_a_cancelled_record(tmp_path: Path) -> None:
    a = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "notes-a")}
    svc = service(
        tmp_path, a, {"name": "b", "path": str(tmp_path / "b"), "output": str(tmp_path / "notes-b")}
    )
    for i in range(2):
        svc.jobs.add(
            ("b", f"{i}.txt", 1, 1, i), path=tmp_path / "b" / f"{i}.txt", relpath=f"{i}.txt", output_path="x"
        )
    with pytest.raises(Refused, match="no bucket named or at 'nope'"):
        live(svc).remove_bucket("nope", None, cancel=True)
    result = live(svc).remove_bucket(str(tmp_path / "b"), str(tmp_path / "b"), cancel=True)  # by its dir
    assert result == {"bucket": "b", "parked": 0, "cancelled": 2, "running": 0}
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "state" / "records").iterdir())]
    assert [(r["category"], r["severity"], r["state"]) for r in records] == [
        ("Cancelled", "INFO", "failed")
    ] * 2
    assert svc.jobs.counts()["failed"] == 2 and svc.watcher.bucket_names == ["a"]
    with pytest.raises(Refused, match="the only one"):
        live(svc).remove_bucket("a", None, cancel=False)


def test_cancel_reaches_a_bucket_already_gone_and_jobs_that_come_back_later(tmp_path: Path) -> None:
    a = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "notes-a")}
    svc = service(
        tmp_path, a, {"name": "b", "path": str(tmp_path / "b"), "output": str(tmp_path / "notes-b")}
    )
    jobs = []
    for i in range(2):
        job = svc.jobs.add(
            ("b", f"{i}.txt", 1, 1, i), path=tmp_path / "b" / f"{i}.txt", relpath=f"{i}.txt", output_path="x"
        )
        assert job is not None
        jobs.append(job)
    svc.jobs.flush()
    running = svc.jobs.pop_queued()
    assert running is jobs[0]
    svc.jobs.mark_running(running, "0.1", lease_s=10)
    lc = live(svc)
    assert lc.remove_bucket("b", None, cancel=False)["parked"] == 1  # parked, the running one finishes
    assert lc.remove_bucket("b", None, cancel=True)["cancelled"] == 1  # gone already: still cancellable
    svc.jobs.requeue(running, "WorkerCrash: died")  # its worker died: it comes back, to a cancelled bucket
    lc.tick()
    assert svc.jobs.counts()["failed"] == 2 and svc.jobs.parked() == {}
