"""Attacks that try to get out: the network, files outside the buckets, other processes, the kernel.

One service runs every attack at once, beside ordinary files. Each attack must end as a SandboxViolation
ERROR record, nothing may reach the listeners or the planted files, no worker may die of it, and the
ordinary files must be processed as if nothing happened.
"""

from __future__ import annotations

import pytest

from tests.harness import wait_for
from tests.hostile.arena import Arena, records_by_file

pytestmark = pytest.mark.timeout(120)

HANDLER_ATTACKS = [
    "tcp",
    "udp",
    "dns",
    "abstract_unix",
    "path_unix",
    "read_secret",
    "write_outside",
    "thread_reads_secret",
    "coordinator_environ",
    "kill_coordinator",
    "kill_other_worker",
    "ptrace_coordinator",
    "ptrace_other_worker",
    "unshare_user",
    "setuid_helper",
    "mount_tmpfs",
]
COMMAND_ATTACKS = ["tcp", "udp", "read", "write"]
ORDINARY = [f"ordinary-{i}.txt" for i in range(8)]


def test_escapes_are_refused_and_recorded_as_sandbox_violations(arena: Arena) -> None:
    with arena.start(arena.config(HANDLER_ATTACKS, COMMAND_ATTACKS), workers=3) as svc:
        rows = svc.wait_ready(3)
        pids_before = {r["slot"]: r["pid"] for r in rows}
        coordinator = svc.proc.pid
        files = [f"h-{c}.txt" for c in HANDLER_ATTACKS] + [f"c-{c}.txt" for c in COMMAND_ATTACKS]
        arena.drop(svc, files + ORDINARY)
        svc.wait_terminal(len(files) + len(ORDINARY), timeout=90)

        records = records_by_file(svc)
        wrong = {}
        for name in files:
            (record,) = records[name]
            if (record["_kind"], record.get("category")) != ("ERROR", "SandboxViolation"):
                wrong[name] = (
                    record["_kind"],
                    record.get("category"),
                    record.get("error", {}).get("message"),
                )
        assert wrong == {}, wrong
        for name in ORDINARY:
            assert [r["_kind"] for r in records[name]] == ["SUCCESS"], records[name]

        # Nothing got through, and nobody was hurt.
        assert arena.listeners.heard() == []
        assert not arena.outside_write.exists()
        assert "TOP SECRET" not in "".join(p.read_text() for p in svc.notes.rglob("*.obs.md"))
        assert svc.proc.poll() is None and svc.proc.pid == coordinator
        rows = svc.workers()
        assert {r["slot"]: r["pid"] for r in rows} == pids_before, "an attack killed a worker"
        assert all(r["restarts"] == 0 for r in rows)
        assert svc.status()["health"] == "healthy"
        wait_for(lambda: svc.stop() == 0, 30, "a clean stop")


def test_a_setuid_program_gives_no_privilege_back(arena: Arena) -> None:
    if arena.setuid_grep is None:
        pytest.skip("making a setuid-root program needs root")
    with arena.start(arena.config([], ["setuid"]), workers=1) as svc:
        svc.wait_ready(1)
        arena.drop(svc, ["c-setuid.txt"])
        svc.wait_terminal(1, timeout=30)
        (record,) = records_by_file(svc)["c-setuid.txt"]
        assert record["_kind"] == "SUCCESS", record
        note = (svc.notes / "c-setuid.txt.obs.md").read_text()
        assert "CapEff:\t0000000000000000" in note or "CapEff: 0000000000000000" in note, note
