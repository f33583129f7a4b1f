"""The sandbox as seen from outside: every worker reports the layers it verified, every thread of every
worker is bound by them, the workers die with a SIGKILLed coordinator, and a layer the kernel does not
offer is reported, or refuses the start when `sandbox.require` names it.

"The kernel does not offer it" is arranged for real: the coordinator is started under a seccomp filter
that makes `landlock_create_ruleset` fail with ENOSYS, as on a kernel built without Landlock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from coordinator.cgroupfs import find_hierarchies
from protocol.sandbox import LAYER_ORDER
from tests.harness import REPO, RunningService, cli, poll_until, wait_for, write_config

pytestmark = pytest.mark.timeout(90)

#: Runs argv[1:] with landlock_create_ruleset (444 on every architecture) failing with ENOSYS.
NO_LANDLOCK = textwrap.dedent(
    """
    import errno, os, sys
    from worker.sandbox._libseccomp import SCMP_ACT_ALLOW, Filter, act_errno, library
    library()
    f = Filter()
    f.add(act_errno(errno.ENOSYS), 444)
    f.load()
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    """
)


def _status(pid: int, tid: str) -> dict[str, str]:
    text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_every_thread_of_every_worker_is_bound_and_reported(scratch: Path) -> None:
    with RunningService(scratch, workers=2) as svc:
        rows = svc.wait_ready(2)
        for row in rows:
            assert row["sandbox"] == list(LAYER_ORDER), row  # verified from inside, in order
        table = cli("-m", "coordinator.ctl", "--state-dir", str(svc.state), "workers")
        assert table.returncode == 0 and "SANDBOX" in table.stdout
        assert table.stdout.count(f"all {len(LAYER_ORDER)}") == len(rows)

        my_net = os.stat("/proc/self/ns/net").st_ino
        for row in rows:
            pid = row["pid"]
            tasks = os.listdir(f"/proc/{pid}/task")
            assert len(tasks) >= 3  # main, the job runner, ZeroMQ's I/O thread: all started after the layers
            for tid in tasks:
                status = _status(pid, tid)
                assert status["Seccomp"].strip() == "2", (pid, tid, status["Seccomp"])  # filter mode
                assert status["NoNewPrivs"].strip() == "1"
                assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
            assert os.stat(f"/proc/{pid}/ns/net").st_ino != my_net  # its own network namespace
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            assert "openbuckets-" in cgroups, cgroups
        assert svc.stop() == 0


def test_a_sigkilled_coordinator_takes_its_workers_and_their_cgroups_with_it(scratch: Path) -> None:
    svc = RunningService(scratch, workers=3)
    rows = svc.wait_ready(3)
    pids = [r["pid"] for r in rows]
    coordinator = svc.proc.pid
    svc.kill()
    assert poll_until(lambda: not any(psutil.pid_exists(p) for p in pids), 2.0), "workers outlived it"
    # Its cgroups are left behind (nobody could remove them); the next start cleans them up.
    found = find_hierarchies(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())
    own = [d for d in (found.memory, found.pids, found.unified) if d is not None]
    stale = [d / f"openbuckets-{coordinator}" for d in own if (d / f"openbuckets-{coordinator}").is_dir()]
    if not stale:
        pytest.skip("no writable cgroups here: nothing is left behind to clean")
    with RunningService(scratch, workers=1) as again:
        again.wait_ready(1)
        assert all(not d.exists() for d in stale), stale
        assert again.stop() == 0


def test_a_missing_layer_is_reported_and_a_required_one_refuses_the_start(scratch: Path) -> None:
    if not Path("/proc/self/status").read_text().count("Seccomp:"):
        pytest.skip("no seccomp here to take Landlock away with")
    config = write_config(scratch / "ob.toml", scratch, workers=1)
    wrapper = [sys.executable, "-c", NO_LANDLOCK, "-m", "coordinator.cli", "start", "--config", str(config)]

    # Required: the service refuses to start, with one line naming the layer and why, and exit code 2.
    refused = subprocess.run(
        [*wrapper, "--sandbox-require", "landlock,seccomp"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("ob-coordinator:")]
    assert "sandbox.require: layer 'landlock' is unavailable" in line, line
    assert not (scratch / "state" / "queue.db").exists()  # nothing started

    # Not required (the default): it starts, warns, and every worker reports what it lacks.
    log = open(scratch / "coordinator.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(wrapper, stdout=log, stderr=subprocess.STDOUT, cwd=str(scratch))
    try:
        from coordinator.ctl import request

        def rows() -> list[dict[str, object]]:
            try:
                return list(request(scratch / "state", "workers", timeout_s=2))
            except Exception:
                return []

        wait_for(lambda: all(r["state"] == "ready" for r in rows()) and rows(), 30, "workers")
        for row in rows():
            assert "landlock" not in row["sandbox"] and "seccomp" in row["sandbox"], row  # type: ignore[operator]
        text = (scratch / "coordinator.log").read_text()
        assert "sandbox layer landlock is unavailable" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
