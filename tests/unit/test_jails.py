"""What the coordinator asks of each worker's sandbox: the spec's paths and limits, the environment it
passes on, the deadline per job, and which layers a worker must verify (no processes, no cgroups)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator.config import Config, load_config
from coordinator.jails import Jail, Jails, SandboxUnavailable
from coordinator.supervisor import job_deadline
from protocol.sandbox import BASE_LAYERS, KERNEL_LAYERS, LayerReport

pytestmark = pytest.mark.timeout(10)


def _config(tmp_path: Path, **sandbox: object) -> Config:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "pdf.sh").write_text("#!/bin/sh\n")
    overrides = {
        "buckets": [{"path": str(tmp_path / "in")}],
        "service.output": str(tmp_path / "notes"),
        "service.state_dir": str(tmp_path / "state"),
        "jobs.skill_paths": [str(tmp_path / "handlers")],
        "jobs.max_memory_bytes": 512 * 1024 * 1024,
        "jobs.max_processes": 32,
        # a command skill naming its script by absolute path
        "skills": [{"pattern": "*.pdf", "command": ["/bin/sh", str(tmp_path / "pdf.sh"), "{input}"]}],
        **{f"sandbox.{k}": v for k, v in sandbox.items()},
    }
    return load_config(None, overrides)


def test_the_spec_grants_the_buckets_outputs_and_named_programs_only(tmp_path: Path) -> None:
    jails = Jails(_config(tmp_path), tmp_path / "state" / "run")
    spec = jails.spec(tmp_path / "scratch", None)
    assert spec.read == [str(tmp_path / "in"), str(tmp_path / "handlers")]
    assert spec.write == [str(tmp_path / "notes")]
    assert spec.execute == ["/bin/sh", str(tmp_path / "pdf.sh")]  # never "{input}"
    assert spec.canary == str(tmp_path / "state" / "run" / "canary")
    assert (spec.limits.memory_bytes, spec.limits.processes) == (512 * 1024 * 1024, 32)


def test_a_worker_inherits_no_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    jails = Jails(_config(tmp_path), tmp_path / "run")
    jail = Jail("0.1", tmp_path / "s", None, jails.spec(tmp_path / "s", None))
    env = jails.env(jail)
    assert "AWS_SECRET_ACCESS_KEY" not in env and env["LANG"] == "C.UTF-8"
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path / "s")


def _reports(missing: str = "") -> list[LayerReport]:
    return [
        LayerReport(name=n, active=n != missing, detail="ENOSYS" if n == missing else "")
        for n in (*BASE_LAYERS, *KERNEL_LAYERS)
    ]


def test_auto_requires_what_works_here_and_a_list_refuses_what_does_not(tmp_path: Path) -> None:
    auto = Jails(_config(tmp_path), tmp_path / "run")
    required = auto.required(_reports(missing="landlock"))
    if sys.platform.startswith("linux"):
        assert "landlock" not in required and {"seccomp", "rlimits"} <= set(required)
    strict = Jails(_config(tmp_path, require=["landlock", "seccomp"]), tmp_path / "run")
    assert strict.required(_reports()) == ["landlock", "seccomp"]
    with pytest.raises(SandboxUnavailable, match="layer 'landlock' is unavailable: ENOSYS"):
        strict.required(_reports(missing="landlock"))


def test_the_deadline_grows_with_the_input(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    cfg.jobs.deadline_s, cfg.jobs.deadline_per_mb_s = 10, 2
    assert job_deadline(cfg, 0) == 10
    assert job_deadline(cfg, 5 * 1024 * 1024) == 20
    assert job_deadline(cfg, None) == 10


def test_a_bucket_holding_the_state_dir_is_refused(tmp_path: Path) -> None:
    overrides = {"buckets": [{"path": str(tmp_path)}], "service.state_dir": str(tmp_path / ".ob")}
    cfg = load_config(None, overrides)
    with pytest.raises(SandboxUnavailable, match="workers may read .* which holds the state dir"):
        Jails(cfg, tmp_path / ".ob" / "run").check_paths()
    cfg.sandbox.disable = ["landlock"]  # no Landlock, nothing to void: it is the operator's call
    Jails(cfg, tmp_path / ".ob" / "run").check_paths()


def test_only_files_named_by_a_command_become_executable(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\n")
    skills = [{"pattern": "*", "command": ["/bin/sh", "-c", "x", str(script), "/", "/tmp", "{input}"]}]
    cfg = load_config(None, {"buckets": [{"path": str(tmp_path / "in")}], "skills": skills})
    spec = Jails(cfg, tmp_path / "run").spec(tmp_path / "s", None)
    assert spec.execute == ["/bin/sh", str(script)]  # never "/" or "/tmp"
