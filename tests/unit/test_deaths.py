"""Why a worker died, as the category charged to its job (pure logic, no processes)."""

from __future__ import annotations

import signal

import pytest

from coordinator.deaths import classify_death
from coordinator.jails import Aftermath

pytestmark = pytest.mark.timeout(10)


def test_a_kill_by_the_supervisor_keeps_its_own_category() -> None:
    death = classify_death(-signal.SIGKILL, Aftermath(oom_kills=1), ("Timeout", "job overran its deadline"))
    assert (death.category, death.code) == ("Timeout", "SIGKILL")
    assert death.reason.startswith("job overran its deadline; worker killed by SIGKILL")


@pytest.mark.parametrize(
    ("returncode", "aftermath", "category", "words"),
    [
        (-signal.SIGKILL, Aftermath(oom_kills=1), "ResourceLimit", "memory limit"),
        (-signal.SIGXCPU, Aftermath(), "ResourceLimit", "CPU time limit"),
        (-signal.SIGXFSZ, Aftermath(), "ResourceLimit", "file size limit"),
        (-signal.SIGSYS, Aftermath(), "SandboxViolation", "blocked system call"),
        (-signal.SIGKILL, Aftermath(pids_limit_hits=3), "ResourceLimit", "process limit"),
        (-signal.SIGSEGV, Aftermath(), "WorkerCrash", "killed by SIGSEGV"),
        (-signal.SIGSEGV, Aftermath(pids_limit_hits=3), "WorkerCrash", "killed by SIGSEGV"),
        (7, Aftermath(), "WorkerCrash", "exited with code 7"),
    ],
)
def test_exit_status_and_cgroup_counters_name_the_cause(
    returncode: int, aftermath: Aftermath, category: str, words: str
) -> None:
    death = classify_death(returncode, aftermath)
    assert death.category == category
    assert words in death.reason
