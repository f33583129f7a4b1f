"""The supervisor's policies wired together, driven by hand: breakers, balancer, recycling, failed slots and
their trial starts, the fleet guard, scaling and the operator's actions. Fake processes, a recording
transport and a clock we move ourselves (see test_supervisor's Rig): no sockets, no sleeping."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

from coordinator.config import GrepRuleConfig
from coordinator.states import BreakerState, SlotState
from protocol.messages import Error, Heartbeat, Ready, Result, Shutdown
from tests.unit.test_supervisor import Rig, facts


def rig_of(tmp_path: Path, workers: int = 3, **overrides: object) -> Rig:
    base: dict[str, object] = {"service.workers": workers, "supervisor.spare_workers": 0}
    rig = Rig(tmp_path, **(base | overrides))
    rig.sup.start_all(rig.now)
    for i in range(workers):
        rig.make_ready(i)
    return rig


def ready(rig: Rig, index: int) -> None:
    slot = rig.sup.find(index)
    assert slot.pid is not None
    rig.frame_to(slot, Ready(slot=index, generation=slot.generation, pid=slot.pid, version="t"))


def finish(rig: Rig, index: int, *, ok: bool = True, category: str = "FileContent") -> None:
    """The worker of slot `index` answers the job it holds."""
    slot = rig.sup.find(index)
    assert slot.job is not None
    if ok:
        body: Result | Error = Result(
            job_id=slot.job.wire_id, output_path="/n/x.obs.md", duration_s=0.1, facts=facts()
        )
    else:
        body = Error(job_id=slot.job.wire_id, category=category, message="bad")
    rig.frame_to(slot, body)


def wait(rig: Rig, seconds: float) -> None:
    """Let time pass with every live worker heartbeating (so none of them looks hung)."""
    step = 0.5
    while seconds > 0:
        for slot in rig.sup.all_slots:
            if slot.proc is not None and slot.state is not SlotState.STARTING:
                rig.frame_to(slot, Heartbeat())
        rig.advance(min(step, seconds))
        seconds -= step


def crash(rig: Rig, index: int, code: int = -signal.SIGSEGV) -> None:
    """Slot `index`'s process dies; the tick sees it."""
    proc = rig.sup.find(index).proc
    assert proc is not None
    proc.returncode = code  # type: ignore[attr-defined]
    rig.advance(0.001)


def job_to(rig: Rig, name: str) -> int:
    """Queue one job, dispatch, and return the slot that got it."""
    rig.add_job(name)
    before = len(rig.executes())
    rig.sup.dispatch(rig.now)
    assert len(rig.executes()) == before + 1
    identity = rig.executes()[-1][0]
    return next(s.index for s in rig.sup.slots if s.identity == identity)


# -- breakers -------------------------------------------------------------------------------------------


def test_crashes_open_a_slots_breaker_and_the_balancer_stops_feeding_it(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, **{"breaker.failure_threshold": 2, "breaker.recovery_s": 30.0})
    slot = rig.sup.find(1)
    for _ in range(2):
        crash(rig, 1)
        wait(rig, 2.0)  # past the restart backoff
        ready(rig, 1)
    assert slot.breaker.state is BreakerState.OPEN and rig.sup.stats["breaker_transitions"] == 1
    got = Counter(job_to(rig, f"f{i}.txt") for i in range(2))  # the other two take the work
    assert got == {0: 1, 2: 1} and slot.job is None
    rig.add_job("waits.txt")
    assert rig.sup.dispatch(rig.now) == 0  # 0 and 2 are busy, 1 is open: the job waits
    row = slot.row(rig.now)["breaker"]
    assert row["state"] == "open" and 0 < row["retry_in_s"] <= 30.0


def test_the_half_open_probe_closes_the_breaker_again(tmp_path: Path) -> None:
    overrides = {"breaker.failure_threshold": 1, "breaker.recovery_s": 5.0, "fleet.open_fraction": 0.0}
    rig = rig_of(tmp_path, workers=1, **overrides)
    crash(rig, 0)
    wait(rig, 2.0)
    ready(rig, 0)
    slot = rig.sup.find(0)
    rig.add_job("a.txt")
    assert rig.sup.dispatch(rig.now) == 0 and slot.breaker.state is BreakerState.OPEN
    wait(rig, 5.0)
    assert rig.sup.dispatch(rig.now) == 1  # the probe
    assert slot.breaker.state is BreakerState.HALF_OPEN
    finish(rig, 0)
    assert slot.breaker.state is BreakerState.CLOSED


def test_bad_files_never_open_a_breaker(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"breaker.failure_threshold": 2, "breaker.min_samples": 2})
    for i in range(10):
        job_to(rig, f"bad{i}.bin")
        finish(rig, 0, ok=False, category="FileContent" if i % 2 else "PatternMatching")
    assert rig.sup.find(0).breaker.state is BreakerState.CLOSED
    assert rig.jobs.counts()["failed"] == 10


def test_a_job_timeout_counts_against_the_breaker_once(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"breaker.failure_threshold": 2})
    slot = rig.sup.find(0)
    job_to(rig, "hang.txt")
    finish(rig, 0, ok=False, category="Timeout")  # the worker abandons the job and exits
    assert slot.state is SlotState.STOPPING
    crash(rig, 0, code=0)
    assert slot.breaker.row(rig.now)["consecutive_failures"] == 1  # not 2: the exit was announced


def test_operator_breaker_reset_closes_it(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"breaker.failure_threshold": 1})
    crash(rig, 0)
    assert rig.sup.find(0).breaker.state is BreakerState.OPEN
    rig.sup.reset_breaker(0, rig.now)
    assert rig.sup.find(0).breaker.state is BreakerState.CLOSED


# -- balancer ----------------------------------------------------------------------------------------------


def test_round_robin_and_weighted_share_idle_workers_as_configured(tmp_path: Path) -> None:
    for sub in ("rr", "w"):
        (tmp_path / sub).mkdir()
    rr = rig_of(tmp_path / "rr", **{"balancer.strategy": "round_robin"})
    order = []
    for i in range(6):
        order.append(job_to(rr, f"r{i}.txt"))
        finish(rr, order[-1])
    assert order == [0, 1, 2, 0, 1, 2]
    weighted = rig_of(tmp_path / "w", **{"balancer.strategy": "weighted", "balancer.weights": [3, 1, 1]})
    got: Counter[int] = Counter()
    for i in range(15):
        index = job_to(weighted, f"w{i}.txt")
        got[index] += 1
        finish(weighted, index)
    assert got == {0: 9, 1: 3, 2: 3}


# -- recycling -------------------------------------------------------------------------------------------


def test_a_worker_is_recycled_after_max_jobs_and_the_slot_refilled_without_a_restart(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.max_jobs_per_worker": 2})
    slot = rig.sup.find(0)
    for i in range(2):
        job_to(rig, f"j{i}.txt")
        finish(rig, 0)
    assert slot.state is SlotState.STOPPING and slot.plan and "2 jobs done" in slot.plan
    assert isinstance(rig.sent[-1][1], Shutdown)
    crash(rig, 0, code=0)  # it leaves as asked
    assert slot.state is SlotState.STARTING and slot.generation == 2
    assert slot.restarts == 0 and slot.recycles == 1 and slot.breaker.state is BreakerState.CLOSED


def test_recycling_by_rss_replaces_one_slot_at_a_time(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"supervisor.max_rss_mb": 100})
    for i in range(2):
        rig.frame(i, Heartbeat(rss_bytes=200 * 1024 * 1024))  # both grew past the limit
    job_to(rig, "a.txt")
    job_to(rig, "b.txt")
    finish(rig, 0)
    finish(rig, 1)
    states = [rig.sup.find(i).state for i in (0, 1)]
    assert states.count(SlotState.STOPPING) == 1  # never two at once
    leaving = 0 if states[0] is SlotState.STOPPING else 1
    crash(rig, leaving, code=0)
    ready(rig, leaving)  # the replacement is up: now the other one may go
    rig.now += 1.0
    rig.sup.tick(rig.now)  # the idle one is looked at with the heartbeat
    assert rig.sup.find(1 - leaving).state is SlotState.STOPPING


def test_a_worker_that_ignores_shutdown_is_killed(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.max_jobs_per_worker": 1})
    job_to(rig, "a.txt")
    finish(rig, 0)
    rig.frame(0, Heartbeat())
    rig.advance(11.0)
    assert (rig.procs[0].pid, signal.SIGTERM) in rig.signals


# -- failed slots and restart storms -----------------------------------------------------------------------


def test_exit_78_fails_the_slot_at_once_and_a_trial_start_follows_the_cool_down(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.failed_cooldown_s": 60.0})
    slot = rig.sup.find(0)
    crash(rig, 0, code=78)
    assert slot.state is SlotState.FAILED and 59 < slot.row(rig.now)["retry_in_s"] <= 60
    rig.advance(59.0)
    assert slot.state is SlotState.FAILED
    rig.advance(1.5)
    assert slot.state is SlotState.STARTING  # the trial start
    crash(rig, 0, code=1)  # the trial fails: failed again, and the next cool-down doubles
    assert slot.state is SlotState.FAILED and 119 < slot.row(rig.now)["retry_in_s"] <= 120


def test_restart_worker_starts_a_failed_slot_at_once(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1)
    crash(rig, 0, code=78)
    assert rig.sup.restart_slot(0, rig.now) == "starting"
    assert rig.sup.find(0).state is SlotState.STARTING


def test_restart_worker_lets_a_busy_worker_finish_first(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1)
    job_to(rig, "a.txt")
    assert rig.sup.restart_slot(0, rig.now) == "draining"
    assert rig.sup.find(0).row(rig.now)["state"] == "draining"
    finish(rig, 0)
    assert rig.jobs.counts()["done"] == 1 and rig.sup.find(0).state is SlotState.STOPPING


def test_a_restart_storm_pauses_dispatch_until_a_probe_succeeds(tmp_path: Path) -> None:
    rig = rig_of(
        tmp_path,
        workers=2,
        **{"fleet.max_restarts": 2, "fleet.probe_interval_s": 5.0, "supervisor.max_restarts": 100},
    )
    for _ in range(3):
        crash(rig, 0)
        wait(rig, 5.0)
    assert rig.sup.fleet.paused
    ready(rig, 0)
    rig.add_job("a.txt")
    rig.add_job("b.txt")
    assert rig.sup.dispatch(rig.now) in (0, 1)
    wait(rig, 5.0)
    rig.sup.dispatch(rig.now)
    busy = [s for s in rig.sup.slots if s.job is not None]
    assert len(busy) == 1 and busy[0].fleet_probe  # exactly one probe
    finish(rig, busy[0].index)
    assert not rig.sup.fleet.paused
    assert rig.jobs.counts()["done"] == 1


def test_half_the_breakers_open_pauses_the_fleet(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"breaker.failure_threshold": 1, "fleet.max_restarts": 0})
    crash(rig, 0)
    assert rig.sup.fleet.paused and "breaker" in (rig.sup.fleet.reason or "")
    rig.sup.resume(rig.now)
    assert not rig.sup.fleet.paused


# -- scaling and draining ---------------------------------------------------------------------------------


def test_scale_up_adds_slots_and_scale_down_drains_without_losing_the_job(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2)
    assert rig.sup.scale(4, rig.now)["added"] == [2, 3]
    assert [s.index for s in rig.sup.slots] == [0, 1, 2, 3]
    ready(rig, 2)
    ready(rig, 3)
    busy = job_to(rig, "a.txt")
    result = rig.sup.scale(1, rig.now)
    assert busy not in result["removing"] and len(result["removing"]) == 3  # idle ones go first
    result = rig.sup.scale(0 + 1, rig.now)  # asking again changes nothing
    assert result == {"added": [], "removing": []}
    for index in [s.index for s in rig.sup.slots if s.index != busy]:
        crash(rig, index, code=0)
    assert [s.index for s in rig.sup.slots] == [busy]
    finish(rig, busy)
    assert rig.jobs.counts()["done"] == 1


def test_drain_stops_dispatch_and_resume_restarts_it(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1)
    rig.sup.drain()
    rig.add_job("a.txt")
    assert rig.sup.dispatch(rig.now) == 0
    rig.sup.resume(rig.now)
    assert rig.sup.dispatch(rig.now) == 1


def test_the_error_record_says_what_was_tried(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"jobs.retry_max_attempts": 2, "jobs.retry_backoff_initial_s": 0.0})
    job_to(rig, "locked.txt")
    slot = rig.sup.find(0)
    assert slot.job is not None
    rig.frame(0, Error(job_id=slot.job.wire_id, category="FileAccess", message="locked", retryable=True))
    assert rig.jobs.counts()["queued"] == 1
    rig.sup.dispatch(rig.now)
    assert slot.job is not None and slot.job.attempts == 2
    rig.frame(0, Error(job_id=slot.job.wire_id, category="FileAccess", message="locked", retryable=True))
    (record,) = rig.records.directory.glob("ERROR-*.json")
    recovery = json.loads(record.read_text())["recovery"]
    assert recovery["attempted"] and recovery["attempts"] == 2 and "gave up" in recovery["reason"]


def test_a_reload_recycles_workers_in_turn_and_applies_policies_and_counts(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"breaker.failure_threshold": 5})
    new = rig.config.model_copy(deep=True)
    new.breaker.failure_threshold = 1
    new.service.workers = 3
    new.grep = [GrepRuleConfig(name="todo", regex="TODO")]  # what workers are told changes
    changes = rig.sup.reconfigure(new, rig.now)
    assert any("recycling" in c for c in changes) and any("workers 3" in c for c in changes)
    assert len(rig.sup.slots) == 3 and rig.sup.find(0).breaker.policy.failure_threshold == 1
    wait(rig, 1.0)  # the heartbeat looks at idle workers: one of the old two leaves, not both
    leaving = [s for s in rig.sup.slots[:2] if s.state is SlotState.STOPPING]
    assert len(leaving) == 1 and leaving[0].plan == "recycled: the configuration was reloaded"


# -- found in review ---------------------------------------------------------------------------------------


def test_a_reload_with_a_shorter_heartbeat_does_not_judge_old_workers_by_it(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2, **{"supervisor.heartbeat_interval_s": 5.0})
    new = rig.config.model_copy(deep=True)
    new.supervisor.heartbeat_interval_s = 1.0
    rig.sup.reconfigure(new, rig.now)
    rig.advance(4.0)  # silent 4 s: past the new limit (3 s), well within the one they were told (15 s)
    assert not rig.signals and all(s.kill is None for s in rig.sup.slots)  # (one is recycled, in turn)


def test_a_worker_asked_to_leave_is_not_judged_hung_while_it_exits(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.max_jobs_per_worker": 1})
    job_to(rig, "a.txt")
    finish(rig, 0)
    slot = rig.sup.find(0)
    rig.advance(5.0)  # silent past liveness x interval (3 s), but within PLANNED_EXIT_S
    assert not rig.signals
    crash(rig, 0, code=0)
    assert slot.state is SlotState.STARTING and slot.breaker.row(rig.now)["consecutive_failures"] == 0


def test_a_spare_that_died_in_the_same_tick_is_not_adopted(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.spare_workers": 1})
    spare = rig.sup.spares[0]
    rig.frame_to(spare, Ready(slot=spare.index, generation=spare.generation, pid=spare.pid or 0, version="t"))
    assert spare.proc is not None and rig.sup.find(0).proc is not None
    spare.proc.returncode = -signal.SIGKILL  # type: ignore[attr-defined]
    rig.sup.find(0).proc.returncode = -signal.SIGKILL  # type: ignore[union-attr]
    rig.advance(0.001)
    assert rig.sup.find(0).state is SlotState.BACKOFF and rig.sup.find(0).restarts == 0


def test_a_fresh_worker_already_over_max_rss_is_not_recycled_forever(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=1, **{"supervisor.max_rss_mb": 10})
    for _ in range(5):
        rig.frame(0, Heartbeat(rss_bytes=50 * 1024 * 1024))
        rig.advance(1.0)
    assert rig.sup.find(0).state is SlotState.READY and rig.sup.stats["recycles"] == 0


def test_restart_worker_refuses_a_slot_being_removed(tmp_path: Path) -> None:
    rig = rig_of(tmp_path, workers=2)
    busy = job_to(rig, "a.txt")
    rig.sup.scale(1, rig.now)  # the idle one goes
    removing = [s for s in rig.sup.slots if s.removing]
    assert [s.index for s in removing] == [1 - busy]
    try:
        rig.sup.restart_slot(removing[0].index, rig.now)
    except RuntimeError as exc:
        assert "being removed" in str(exc)
    else:
        raise AssertionError("restart of a removing slot was accepted")


def test_spawn_failures_go_through_the_backoff_never_a_tight_loop(tmp_path: Path) -> None:
    rig = Rig(tmp_path, **{"service.workers": 1, "supervisor.spare_workers": 0, "supervisor.max_restarts": 3})
    calls: list[float] = []

    def broken_spawn(slot: int, generation: int) -> object:
        calls.append(rig.now)
        raise OSError(12, "Cannot allocate memory")

    rig.sup.spawn = broken_spawn  # type: ignore[assignment]
    rig.sup.start_all(rig.now)
    slot = rig.sup.find(0)
    assert slot.state is SlotState.BACKOFF and slot.breaker.row(rig.now)["consecutive_failures"] == 1
    for _ in range(200):  # 20 s in 0.1 s steps
        rig.advance(0.1)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert len(calls) == 4 and all(g >= 0.5 for g in gaps)  # the first try and 3 restarts, spaced out
    assert slot.state is SlotState.FAILED  # then failed, with its trial start after the cool-down
