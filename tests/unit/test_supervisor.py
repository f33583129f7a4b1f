"""Supervisor policy driven by hand: fake processes, a recording transport, and a clock we move ourselves.

No sockets, no sleeping: `now` is passed in, spawning returns a FakeProc, and frames are built with the
real codec.
"""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest

from coordinator.config import Config, load_config
from coordinator.health import Health
from coordinator.outcomes import Outcomes
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter
from coordinator.slots import Slot
from coordinator.states import SlotState
from coordinator.supervisor import Supervisor
from protocol.codec import encode
from protocol.messages import Body, Error, Execute, FileFacts, Heartbeat, Ready, Result

_pids = itertools.count(4_000_000)  # above pid_max: psutil and pidfd_open find no such process


class FakeProc:
    """Stands in for subprocess.Popen: the test decides when it exits."""

    def __init__(self) -> None:
        self.pid = next(_pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class Rig:
    """A supervisor wired to fakes."""

    def __init__(self, tmp: Path, **overrides: object) -> None:
        base = {
            "service.workers": 2,
            "buckets": [{"path": str(tmp / "b")}],
            "supervisor.backoff_initial_s": 1.0,
        }
        self.config: Config = load_config(None, base | overrides)
        self.jobs = JobQueue(tmp / "queue.db", clock=lambda: self.now)
        self.records = RecordWriter(tmp / "records")
        self.health = Health()
        self.outcomes = Outcomes(self.config, self.jobs, self.records, self.health)
        self.sent: list[tuple[bytes, Body]] = []
        self.signals: list[tuple[int, signal.Signals]] = []
        self.procs: list[FakeProc] = []
        self.sup = Supervisor(
            self.config, self.jobs, self.outcomes, send=self._send, spawn=self._spawn, kill_group=self._kill
        )
        self.now = 100.0

    def _send(self, identity: bytes, body: Body) -> bool:
        self.sent.append((identity, body))
        return True

    def _spawn(self, slot: int, generation: int) -> FakeProc:
        proc = FakeProc()
        self.procs.append(proc)
        return proc  # type: ignore[return-value]

    def _kill(self, pid: int, sig: signal.Signals) -> bool:
        self.signals.append((pid, sig))
        return True

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.sup.tick(self.now)
        self.jobs.flush()

    def frame(self, slot: int, body: Body) -> None:
        self.sup.on_frame(self.sup.slots[slot].identity, encode(body), self.now)

    def frame_to(self, slot: Slot, body: Body) -> None:
        self.sup.on_frame(slot.identity, encode(body), self.now)

    def make_ready(self, slot: int) -> None:
        s = self.sup.slots[slot]
        assert s.pid is not None
        self.frame(slot, Ready(slot=slot, generation=s.generation, pid=s.pid, version="t"))

    def add_job(self, name: str = "a.txt") -> None:
        key = ("b", name, 1, 1, hash(name) & 0xFFFF)
        self.jobs.add(key, path=Path("/b") / name, relpath=name, output_path=Path("/n") / f"{name}.obs.md")
        self.jobs.flush()

    def executes(self) -> list[tuple[bytes, Execute]]:
        return [(i, b) for i, b in self.sent if isinstance(b, Execute)]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    r.sup.start_all(r.now)
    return r


def facts() -> FileFacts:
    return FileFacts(size=1, sha256="a" * 64, file_type="text", mime="text/plain", is_text=True)


def test_ready_gets_config_and_a_job(rig: Rig) -> None:
    rig.make_ready(0)
    assert rig.sup.slots[0].state is SlotState.READY
    rig.add_job()
    assert rig.sup.dispatch(rig.now) == 1
    ((identity, execute),) = rig.executes()
    assert identity == b"0.1" and execute.attempt == 1
    assert rig.sup.slots[0].state is SlotState.BUSY


def test_result_frees_the_worker_and_writes_a_success_record(rig: Rig) -> None:
    rig.make_ready(0)
    rig.add_job()
    rig.sup.dispatch(rig.now)
    job_id = rig.executes()[0][1].job_id
    rig.frame(0, Result(job_id=job_id, output_path="/n/a.txt.obs.md", duration_s=0.1, facts=facts()))
    assert rig.sup.slots[0].state is SlotState.READY and rig.sup.slots[0].jobs_done == 1
    assert rig.jobs.counts()["done"] == 1
    assert len(list(rig.records.directory.glob("SUCCESS-*.json"))) == 1


def test_frames_from_a_previous_generation_are_dropped(rig: Rig) -> None:
    rig.make_ready(0)
    rig.sup.on_frame(b"0.0", encode(Heartbeat()), rig.now)
    rig.sup.on_frame(b"7.1", encode(Heartbeat()), rig.now)
    rig.sup.on_frame(b"junk", encode(Heartbeat()), rig.now)
    rig.sup.on_frame(b"0.1", b"\xc1garbage", rig.now)
    assert rig.sup.stats["bad_frames"] == 1 and rig.sup.stats["stale_frames"] == 1
    assert rig.sup.stats["unknown_peers"] == 2 and rig.sup.stats["version_mismatches"] == 0


def test_no_ready_within_start_timeout_is_killed_then_restarted_with_backoff(rig: Rig) -> None:
    first = rig.procs[0]
    rig.advance(rig.config.supervisor.start_timeout_s + 0.1)
    assert (first.pid, signal.SIGTERM) in rig.signals
    rig.advance(rig.config.supervisor.kill_grace_s + 0.1)
    assert (first.pid, signal.SIGKILL) in rig.signals
    first.returncode = -9
    rig.advance(0.01)
    slot = rig.sup.slots[0]
    assert slot.state is SlotState.BACKOFF and slot.last_exit == "SIGKILL"
    rig.advance(1.0)  # backoff_initial 1 s, jittered into [0.5, 1]
    assert slot.state is SlotState.STARTING and slot.restarts == 1 and slot.generation == 2


def test_a_job_is_requeued_once_then_quarantined_with_the_cause(rig: Rig) -> None:
    rig.make_ready(0)
    rig.add_job("poison.bin")
    rig.sup.dispatch(rig.now)
    rig.procs[0].returncode = -signal.SIGSEGV
    rig.advance(0.01)
    assert rig.jobs.counts()["queued"] == 1
    rig.make_ready(1)
    assert rig.sup.dispatch(rig.now) == 0  # its retry waits for its backoff (0.25 to 0.5 s)
    rig.now += 0.5
    rig.sup.dispatch(rig.now)
    assert rig.executes()[-1][0] == b"1.1" and rig.executes()[-1][1].attempt == 2
    rig.procs[1].returncode = -signal.SIGKILL
    rig.advance(0.01)
    assert rig.jobs.counts()["quarantined"] == 1
    (record,) = rig.records.directory.glob("ERROR-*.json")
    data = json.loads(record.read_text())
    assert data["category"] == "WorkerCrash" and data["error"]["name"] == "Quarantined"
    assert "SIGKILL" in data["error"]["message"] and data["state"] == "quarantined"


def test_more_than_max_restarts_in_the_window_marks_the_slot_failed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, **{"supervisor.max_restarts": 2, "supervisor.backoff_initial_s": 0.1})
    rig.sup.start_all(rig.now)
    slot = rig.sup.slots[0]
    for _ in range(3):
        assert slot.proc is not None
        slot.proc.returncode = 1  # dies at once, every time
        rig.advance(0.01)
        rig.advance(0.2)  # past the (capped, jittered) backoff: restarted
    assert slot.state is SlotState.FAILED
    assert rig.sup.slots[1].state is SlotState.STARTING  # the other slot is untouched


def test_a_busy_worker_past_deadline_plus_grace_is_killed_as_timeout(rig: Rig) -> None:
    rig.make_ready(0)
    rig.add_job()
    rig.sup.dispatch(rig.now)
    jobs = rig.config.jobs
    for _ in range(int((jobs.deadline_s + jobs.deadline_grace_s) / 0.5) + 2):
        rig.frame(0, Heartbeat(state="busy"))  # heartbeating, so only the deadline can end it
        rig.advance(0.5)
    slot = rig.sup.slots[0]
    assert slot.kill is not None and slot.kill.category == "Timeout"


def test_an_idle_worker_that_goes_silent_is_killed(rig: Rig) -> None:
    rig.make_ready(0)
    rig.frame(1, Heartbeat())  # slot 1 never sent READY; it is still starting
    limit = rig.sup.silence_limit
    rig.advance(limit + 0.1)
    slot = rig.sup.slots[0]
    assert slot.kill is not None and "hung" in slot.kill.reason


def test_worker_reported_file_errors_end_the_job_without_harming_the_worker(rig: Rig) -> None:
    rig.make_ready(0)
    rig.add_job()
    rig.sup.dispatch(rig.now)
    job_id = rig.executes()[0][1].job_id
    rig.frame(0, Error(job_id=job_id, category="FileAccess", message="vanished", code="ENOENT"))
    assert rig.jobs.counts()["failed"] == 1
    assert rig.sup.slots[0].state is SlotState.READY
    (record,) = rig.records.directory.glob("ERROR-*.json")
    assert json.loads(record.read_text())["category"] == "FileAccess"


def test_dispatch_prefers_the_least_recently_used_worker(rig: Rig) -> None:
    rig.make_ready(0)
    rig.make_ready(1)
    for name in ("a", "b", "c"):
        rig.add_job(name)
    rig.sup.dispatch(rig.now)
    first = [i for i, _ in rig.executes()]
    job0 = rig.executes()[0][1].job_id
    rig.now += 1
    rig.frame(0, Result(job_id=job0, output_path="/n/x", duration_s=0.1, facts=facts()))
    rig.sup.dispatch(rig.now)
    assert first == [b"0.1", b"1.1"] and rig.executes()[-1][0] == b"0.1"


def test_a_ready_spare_takes_over_a_dead_slot_at_once_and_is_refilled_later(rig: Rig) -> None:
    rig.make_ready(0)
    spare = rig.sup.spares[0]
    spare_pid = spare.pid
    rig.frame_to(spare, Ready(slot=spare.index, generation=spare.generation, pid=spare_pid, version="t"))
    assert spare.state is SlotState.READY
    rig.sup.slots[0].proc.returncode = -signal.SIGKILL  # type: ignore[union-attr]
    rig.advance(0.01)
    slot = rig.sup.slots[0]
    assert slot.state is SlotState.READY and slot.pid == spare_pid and slot.restarts == 1
    assert spare.state is SlotState.BACKOFF and spare.pid is None
    # the promoted process's frames now count for slot 0, and it gets work
    rig.add_job()
    rig.sup.dispatch(rig.now)
    assert rig.executes()[-1][0] == slot.identity == b"2.1"
    rig.advance(1.0)  # past the spare's backoff: a new spare is starting
    assert spare.state is SlotState.STARTING and spare.generation == 2
    assert spare.restarts == 0  # giving its process away is not a crash


def test_spares_are_never_given_jobs(rig: Rig) -> None:
    spare = rig.sup.spares[0]
    rig.frame_to(spare, Ready(slot=spare.index, generation=spare.generation, pid=spare.pid or 0, version="t"))
    rig.add_job()
    assert rig.sup.dispatch(rig.now) == 0


def test_a_retiring_worker_gets_no_next_job_and_no_job_is_charged_for_its_exit(rig: Rig) -> None:
    rig.make_ready(0)
    rig.add_job("a.txt")
    rig.add_job("b.txt")
    rig.sup.dispatch(rig.now)
    first = rig.executes()[0][1].job_id
    body = Result(job_id=first, output_path="/n/a.txt.obs.md", duration_s=0.1, facts=facts(), retiring=True)
    rig.frame(0, body)
    slot = rig.sup.slots[0]
    assert slot.state is SlotState.STOPPING and len(rig.executes()) == 1  # b.txt was not handed to it
    rig.procs[0].returncode = 0  # it leaves
    rig.advance(0.01)
    assert rig.jobs.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0, "quarantined": 0}
    # A fresh worker follows at once: leaving on purpose is not a crash, so no backoff and no restart.
    assert slot.state is SlotState.STARTING and slot.restarts == 0 and slot.generation == 2
