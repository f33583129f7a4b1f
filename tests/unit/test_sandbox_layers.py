"""The base layers, rlimits and privileges, each checked from inside a sandboxed child."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from protocol.sandbox import LAYER_ORDER, SandboxLimits
from tests.unit.test_sandbox_support import in_child, make_spec, reports_by_name
from worker.sandbox import (
    ALLOWED_ENV,
    SandboxError,
    _libc,
    apply_early,
    begin_job,
    cpu_budget_left,
    rlimits,
    start_job_cpu,
)

MIB = 1024 * 1024


def _status(field: str, text: str | None = None) -> str:
    source = text if text is not None else Path("/proc/self/status").read_text()
    return next(line.split(":", 1)[1].strip() for line in source.splitlines() if line.startswith(field + ":"))


@pytest.mark.timeout(30)
def test_base_layers_hold_from_inside(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    os.chmod(spec.scratch, 0o755)  # the scratch layer must fix this

    def body() -> dict[str, object]:
        os.environ["OB_TEST_SECRET"] = "leak"
        was_leader = os.getsid(0) == os.getpid()
        reports = apply_early(spec)
        shell = subprocess.run(
            ["/bin/sh", "-c", "env; grep Cap /proc/self/status"], capture_output=True, text=True
        )
        return {
            "reports": [r.to_dict() for r in reports],
            "was_leader": was_leader,
            "leader": os.getsid(0) == os.getpid(),
            "env": sorted(os.environ),
            "home": os.environ.get("HOME"),
            "tmpdir": os.environ.get("TMPDIR"),
            "cwd": os.getcwd(),
            "tempdir": tempfile.gettempdir(),
            "scratch_mode": stat.S_IMODE(os.stat(spec.scratch).st_mode),
            "pdeathsig": _libc.get_pdeathsig(),
            "nnp": _libc.prctl(_libc.PR_GET_NO_NEW_PRIVS),
            "status": {
                f: _status(f) for f in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "NoNewPrivs")
            },
            "shell": shell.stdout,
        }

    got = in_child(body)
    reports = reports_by_name(got["reports"])
    assert [r["name"] for r in got["reports"]] == list(LAYER_ORDER)
    for name in ("session", "env", "scratch", "rlimits", "pdeathsig", "no_new_privs", "caps"):
        assert reports[name]["active"], reports[name]
    assert not got["was_leader"] and got["leader"]
    assert "OB_TEST_SECRET" not in got["env"] and set(got["env"]) <= ALLOWED_ENV
    assert got["home"] == got["tmpdir"] == got["tempdir"] == spec.scratch
    assert got["cwd"] == os.path.realpath(spec.scratch)
    assert got["scratch_mode"] == 0o700
    assert got["pdeathsig"] == signal.SIGKILL
    assert got["nnp"] == 1
    assert all(int(value, 16) == 0 for key, value in got["status"].items() if key.startswith("Cap"))
    assert got["status"]["NoNewPrivs"] == "1"
    # A uid-0 process regains its bounding set on execve: with the bounding set empty, a shell has nothing.
    assert int(_status("CapEff", got["shell"]), 16) == 0
    assert int(_status("CapBnd", got["shell"]), 16) == 0
    shell_env = {line.split("=", 1)[0] for line in got["shell"].splitlines() if "=" in line}
    assert "OB_TEST_SECRET" not in shell_env


@pytest.mark.timeout(30)
def test_rlimits_are_the_specs(tmp_path: Path) -> None:
    limits = SandboxLimits(memory_bytes=1536 * MIB, cpu_s=7, fsize_bytes=2 * MIB, nofile=128)
    spec = make_spec(tmp_path, limits=limits)

    def body() -> dict[str, object]:
        reports = apply_early(spec)
        got = {
            name: resource.getrlimit(getattr(resource, name))
            for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")
        }
        big = Path(spec.write[0]) / "big.bin"
        with big.open("wb", buffering=0) as fh:
            fh.write(b"x" * (2 * MIB))  # exactly the limit: fine
            fsize_errno = 0
            try:
                fh.write(b"x")
            except OSError as exc:
                fsize_errno = exc.errno or -1
        return {
            "limits": got,
            "fsize_errno": fsize_errno,
            "detail": reports_by_name(reports)["rlimits"].detail,
        }

    got = in_child(body)
    cpu_soft, cpu_hard = got["limits"]["RLIMIT_CPU"]
    assert got["limits"]["RLIMIT_AS"] == [1536 * MIB] * 2
    assert cpu_hard == 7 * rlimits.CPU_LIFETIME_JOBS and 7 <= cpu_soft <= 8  # used CPU, rounded up, + 7 s
    assert got["limits"]["RLIMIT_FSIZE"] == [2 * MIB] * 2
    assert got["limits"]["RLIMIT_NOFILE"] == [128, 128]
    assert got["limits"]["RLIMIT_CORE"] == [0, 0]
    assert got["fsize_errno"] == errno.EFBIG  # CPython ignores SIGXFSZ, so the write fails instead
    assert "CPU 7 s per job" in got["detail"] and "700 s per worker" in got["detail"]


@pytest.mark.timeout(30)
def test_start_job_cpu_moves_the_soft_limit_within_the_lifetime_budget(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, limits=SandboxLimits(cpu_s=5))

    def body() -> dict[str, object]:
        apply_early(spec)
        out: dict[str, object] = {}
        start_job_cpu(5)
        out["soft_after_job"] = resource.getrlimit(resource.RLIMIT_CPU)[0]
        out["expected"] = -(-int(time.process_time() * 1000) // 1000) + 5
        out["budget"] = cpu_budget_left()
        out["full_budget"] = begin_job(spec.limits)
        start_job_cpu(10**9)  # far past the lifetime budget: capped at the hard limit
        out["capped"] = resource.getrlimit(resource.RLIMIT_CPU)
        # Nearly spent: less than cpu_s left under the hard limit, so the worker should be recycled.
        resource.setrlimit(resource.RLIMIT_CPU, (3, 3))
        out["short_budget"] = begin_job(spec.limits)
        out["short_left"] = cpu_budget_left()
        return out

    got = in_child(body)
    assert got["soft_after_job"] in (got["expected"], got["expected"] - 1)
    assert 499 < got["budget"] <= 500
    assert got["full_budget"] is True
    assert got["capped"] == [500, 500]
    assert got["short_budget"] is False and got["short_left"] < 5


@pytest.mark.timeout(30)
def test_cpu_overrun_gets_sigxcpu_before_the_hard_limit(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, limits=SandboxLimits(cpu_s=1))

    def body() -> dict[str, object]:
        apply_early(spec)
        hits: list[float] = []
        signal.signal(signal.SIGXCPU, lambda *_: hits.append(time.process_time()))
        start_job_cpu(1)
        soft = resource.getrlimit(resource.RLIMIT_CPU)[0]
        while not hits and time.process_time() < 10:  # burn CPU until the kernel says stop
            sum(range(10_000))
        return {"hits": hits, "soft": soft, "hard": resource.getrlimit(resource.RLIMIT_CPU)[1]}

    got = in_child(body)
    assert got["hits"], "no SIGXCPU within 10 s of CPU"
    # The kernel checks RLIMIT_CPU against its tick-sampled CPU time, which can run a few ticks ahead of
    # what process_time() reads (observed 1.97 s for a soft limit of 2 under load): allow 0.1 s.
    assert got["soft"] - 0.1 <= got["hits"][0] < got["hard"]


@pytest.mark.timeout(30)
def test_a_failing_base_layer_raises_one_line_naming_it(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, scratch=str(tmp_path / "no-such-dir"))

    def body() -> str:
        try:
            apply_early(spec)
        except SandboxError as exc:
            return str(exc)
        return "no error"

    message = in_child(body)
    assert message.startswith("scratch: ") and "no-such-dir" in message and "\n" not in message


@pytest.mark.timeout(30)
def test_pdeathsig_refuses_a_worker_whose_coordinator_is_gone(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)

    def body() -> str:
        os.getppid = lambda: 1  # what a re-parented orphan sees
        try:
            apply_early(spec)
        except SandboxError as exc:
            return str(exc)
        return "no error"

    assert in_child(body).startswith("pdeathsig: the coordinator is gone")


@pytest.mark.timeout(30)
def test_disabled_layers_are_reported_and_left_alone(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, disable=["netns", "caps"])

    def body() -> dict[str, object]:
        before = os.stat("/proc/self/ns/net").st_ino
        reports = apply_early(spec)
        return {
            "reports": [r.to_dict() for r in reports],
            "same_netns": os.stat("/proc/self/ns/net").st_ino == before,
            "cap_eff": int(_status("CapEff"), 16),
        }

    got = in_child(body)
    reports = reports_by_name(got["reports"])
    for name in ("netns", "caps"):
        assert reports[name] == {"name": name, "active": False, "detail": "disabled by config"}
    assert reports["landlock"]["active"] and reports["seccomp"]["active"]
    assert got["same_netns"] and got["cap_eff"] != 0


@pytest.mark.timeout(30)
def test_a_non_root_worker_reports_what_it_cannot_do(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    nobody = 65534
    base = Path(tempfile.mkdtemp(prefix="ob-sbx-"))  # tmp_path's parents are private to root
    try:
        os.chmod(base, 0o755)
        spec = make_spec(base)
        for path in (spec.scratch, *spec.write):
            os.chown(path, nobody, nobody)

        def body() -> dict[str, object]:
            os.setgroups([])
            os.setgid(nobody)
            os.setuid(nobody)
            reports = apply_early(spec)
            return {
                "reports": [r.to_dict() for r in reports],
                "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
            }

        got = in_child(body)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)
    reports = reports_by_name(got["reports"])
    assert not reports["netns"]["active"] and "not root" in reports["netns"]["detail"]
    assert reports["caps"]["active"] and "not root" in reports["caps"]["detail"]
    assert reports["landlock"]["active"] and reports["seccomp"]["active"]
    # Relative to what nobody already runs (at least this child): never below `processes` + 1.
    assert got["nproc"][1] > spec.limits.processes
    assert f"NPROC {got['nproc'][1]}" in reports["rlimits"]["detail"]
