"""Attacks on resources and on the worker itself: memory, CPU, processes, disk, output, crashes, hangs,
and processes that try to outlive their job or their worker.

Each attack must end in one record with the precise category; the ordinary files of the same burst must
be processed; afterwards the service is healthy and no hostile process is left anywhere.
"""

from __future__ import annotations

import pytest

from tests.harness import poll_until, wait_for
from tests.hostile.arena import Arena, marked_processes, records_by_file

pytestmark = pytest.mark.timeout(180)

ORDINARY = [f"ordinary-{i}.txt" for i in range(6)]


def _check(arena: Arena, expected: dict[str, tuple[str, str | None]], workers: int, **limits: object) -> None:
    """Run the attacks in `expected` (file name → (record kind, category)) in one burst, with ordinary
    files, and check every record, the service's health and that nothing hostile survives."""
    handlers = [n[2:-4] for n in expected if n.startswith("h-")]
    commands = [n[2:-4] for n in expected if n.startswith("c-")]
    with arena.start(arena.config(handlers, commands, **limits), workers=workers) as svc:  # type: ignore[arg-type]
        svc.wait_ready(workers)
        log_before = svc.log_path.stat().st_size
        arena.drop(svc, [*expected, *ORDINARY])
        svc.wait_terminal(len(expected) + len(ORDINARY), timeout=150)
        records = records_by_file(svc)
        got = {}
        for name in expected:
            (record,) = records[name]  # exactly one terminal record per file
            got[name] = (record["_kind"], record.get("category"))
        assert got == expected, {n: records[n][0].get("error") for n in expected if got[n] != expected[n]}
        for name in ORDINARY:
            assert [r["_kind"] for r in records[name]] == ["SUCCESS"], records[name]
        # Flooded stdout/stderr went nowhere: the coordinator's log did not take 100 MB of it.
        assert svc.log_path.stat().st_size - log_before < 5 * 1024 * 1024
        wait_for(lambda: svc.status()["health"] == "healthy", 30, "health to be healthy again")
        assert not poll_until(lambda: svc.proc.poll() is not None, 0.1), "the coordinator died"
        # Grandchildren that tried to outlive their job or their worker are gone.
        wait_for(lambda: marked_processes(arena.marker) == [], 10, "hostile grandchildren to be killed")
        assert svc.stop() == 0


def test_handler_resource_attacks_end_in_resource_limit_records(arena: Arena) -> None:
    _check(
        arena,
        {
            "h-alloc.txt": ("ERROR", "ResourceLimit"),
            "h-spin.txt": ("ERROR", "ResourceLimit"),
            "h-forkbomb.txt": ("ERROR", "ResourceLimit"),
            "h-bigfile.txt": ("ERROR", "ResourceLimit"),
            "h-flood.txt": ("SUCCESS", None),
            "h-grandchild.txt": ("SUCCESS", None),
        },
        workers=3,
        deadline_s=20.0,
    )


def test_handler_crashes_and_hangs_cost_only_their_worker(arena: Arena) -> None:
    _check(
        arena,
        {
            "h-segv.txt": ("ERROR", "WorkerCrash"),
            "h-exit7.txt": ("ERROR", "WorkerCrash"),
            "h-deaf_sleeper.txt": ("ERROR", "Timeout"),
            "h-grandchild_then_die.txt": ("ERROR", "WorkerCrash"),
        },
        workers=3,
        deadline_s=2.0,
    )


def test_command_attacks_get_the_same_answers(arena: Arena) -> None:
    _check(
        arena,
        {
            "c-alloc.txt": ("ERROR", "ResourceLimit"),
            "c-forkbomb.txt": ("ERROR", "ResourceLimit"),
            "c-bigfile.txt": ("ERROR", "ResourceLimit"),
            "c-flood.txt": ("ERROR", "ResourceLimit"),
            "c-spin.txt": ("ERROR", "Timeout"),
            "c-deaf.txt": ("ERROR", "Timeout"),
            "c-segv.txt": ("ERROR", "ExternalTool"),
            "c-exit7.txt": ("ERROR", "ExternalTool"),
            "c-grandchild.txt": ("SUCCESS", None),
        },
        workers=3,
        deadline_s=20.0,
        command_timeout_s=1.5,
    )
