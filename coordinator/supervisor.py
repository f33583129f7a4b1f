"""The supervisor: starts workers, hears them, hands them jobs, and replaces the ones that die or hang.

It owns the worker slots and decides; it does no socket I/O of its own. Frames come in through `on_frame`,
go out through the injected `send`, and processes start through the injected `spawn`, so the policy can be
driven in a unit test with fakes while the end-to-end tests use real processes and sockets.

Death and hangs (ARCHITECTURE section 3):
- dead: the process exited (pidfd / poll); the exit code or signal is kept;
- hung: alive but silent for liveness x interval, and either idle, stopped (SIGSTOP), or busy with no CPU
  progress over another liveness window. A busy worker whose CPU time still climbs is left to its deadline;
- overdue: busy past the job's deadline + grace.
A killed worker gets SIGTERM to its process group, then SIGKILL after `kill_grace_s`.
The job a dead worker held goes back to the queue; after `quarantine_after` deaths it is quarantined.

Past our usual ~400 lines on purpose: this is the one place where slot states change, and reading the
transitions in one file beats chasing them through several. Pure pieces live elsewhere: restart policy in
`backoff`, the hung-or-busy verdict in `silence`, job endings in `outcomes`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import psutil
from loguru import logger

from coordinator.backoff import RestartPolicy
from coordinator.config import Config
from coordinator.deaths import classify_death
from coordinator.jails import Aftermath, Jails
from coordinator.jobs import Job
from coordinator.outcomes import Outcomes
from coordinator.queue import JobQueue
from coordinator.slots import Kill, Slot
from coordinator.spawn import Spawner, describe_exit, signal_group
from coordinator.states import RUNNING_STATES, SlotState
from protocol.codec import DecodeError, VersionMismatch, decode
from protocol.messages import (
    Body,
    Error,
    Execute,
    GrepRule,
    Heartbeat,
    Limits,
    Pong,
    Ready,
    Result,
    Shutdown,
    SkillRule,
    Status,
)
from protocol.messages import (
    Config as ConfigMessage,
)

Send = Callable[[bytes, Body], bool]
KillGroup = Callable[[int, signal.Signals], bool]

# Error categories that mean the worker itself is about to exit (it abandons a job it cannot stop).
_WORKER_EXITS_AFTER = frozenset({"Timeout"})


class Supervisor:
    """Worker slots and the rules that keep them filled."""

    def __init__(
        self,
        config: Config,
        jobs: JobQueue,
        outcomes: Outcomes,
        *,
        send: Send,
        spawn: Spawner,
        kill_group: KillGroup = signal_group,
        jails: Jails | None = None,
    ) -> None:
        self.config = config
        self.sup = config.supervisor
        self.jobs = jobs
        self.outcomes = outcomes
        self.send = send
        self.spawn = spawn
        self.kill_group = kill_group
        self.jails = jails
        self.required_layers: list[str] = []  # sandbox layers a worker must verify (set after the probe)
        n = config.service.workers
        self.slots = [Slot(i, self._policy()) for i in range(n)]
        self.spares = [Slot(n + i, self._policy(), spare=True) for i in range(self.sup.spare_workers)]
        self._by_identity: dict[bytes, Slot] = {}
        self.stopping = False
        self.stats = {
            "bad_frames": 0,
            "stale_frames": 0,
            "unknown_peers": 0,
            "version_mismatches": 0,
            "handler_errors": 0,
        }
        self._next_beat = 0.0
        self._config_msg = ConfigMessage(
            heartbeat_interval_s=self.sup.heartbeat_interval_s,
            liveness=self.sup.liveness,
            limits=Limits(
                max_input_bytes=config.jobs.max_input_bytes, preview_lines=config.jobs.preview_lines
            ),
            pipeline=config.jobs.pipeline,
            skills=[SkillRule(**r.model_dump()) for r in config.skills],
            skill_paths=[str(p.expanduser().absolute()) for p in config.jobs.skill_paths],
            grep=[GrepRule(**g.model_dump()) for g in config.grep],
        )

    def _policy(self) -> RestartPolicy:
        s = self.sup
        return RestartPolicy(
            initial=s.backoff_initial_s,
            cap=s.backoff_max_s,
            stable_after=s.stable_uptime_s,
            max_restarts=s.max_restarts,
            window=s.restart_window_s,
        )

    @property
    def silence_limit(self) -> float:
        return self.sup.heartbeat_interval_s * self.sup.liveness

    # -- life cycle --------------------------------------------------------------------------------------

    @property
    def all_slots(self) -> list[Slot]:
        """Working slots, then warm spares."""
        return self.slots + self.spares

    def start_all(self, now: float) -> None:
        """Fill every slot and start the spares."""
        for slot in self.all_slots:
            self._start(slot, now)

    def _start(self, slot: Slot, now: float) -> None:
        slot.generation += 1
        try:
            proc = self.spawn(slot.index, slot.generation)
        except OSError as exc:
            logger.error("slot {}: could not start a worker: {}", slot.index, exc)
            self._after_death(slot, now, uptime=0.0)
            return
        slot.attach(proc, now, f"{slot.index}.{slot.generation}")
        self._by_identity[slot.identity] = slot
        kind = "spare worker" if slot.spare else "worker"
        logger.info("slot {}: started {} {} (pid {})", slot.index, kind, slot.name, proc.pid)

    def kill(self, slot: Slot, now: float, category: str, reason: str) -> None:
        """Start killing a worker: SIGTERM (and SIGCONT, so a stopped one can act on it) to its group now,
        SIGKILL once `kill_grace_s` has passed."""
        if slot.proc is None or slot.kill is not None:
            return
        logger.warning("slot {}: killing worker {} (pid {}): {}", slot.index, slot.name, slot.pid, reason)
        slot.kill = Kill(category, reason, now + self.sup.kill_grace_s)
        slot.state = SlotState.STOPPING
        self.kill_group(slot.proc.pid, signal.SIGTERM)
        self.kill_group(slot.proc.pid, signal.SIGCONT)
        if self.sup.kill_grace_s == 0:
            self.kill_group(slot.proc.pid, signal.SIGKILL)

    # -- frames in ---------------------------------------------------------------------------------------

    def on_frame(self, identity: bytes, frame: bytes, now: float) -> None:
        """One frame from a worker's DEALER. Never raises: bad input is counted, logged and dropped."""
        try:
            env = decode(frame)
        except VersionMismatch as exc:
            # Answer in our own version, whoever it is: a peer of another build deserves to know why it is
            # ignored. A live slot speaking it is killed (our ROUTER cannot disconnect a peer by itself).
            self.stats["version_mismatches"] += 1
            logger.error("peer {!r}: {}; dropping it", identity[:32], exc)
            self.send(identity, Error(category="Protocol", message=str(exc), code="version"))
            slot = self._slot_for(identity, count=False)
            if slot is not None:
                self.kill(slot, now, "Protocol", str(exc))
            return
        except DecodeError as exc:
            self.stats["bad_frames"] += 1
            logger.warning("peer {!r}: dropped a bad frame: {}", identity[:32], exc)
            return
        slot = self._slot_for(identity)
        if slot is None:
            return
        slot.last_seen = now
        slot.silence.reset()
        body = env.body
        if isinstance(body, Heartbeat):
            if body.rss_bytes is not None:
                slot.rss_bytes = body.rss_bytes
        elif isinstance(body, Result):
            self._on_result(slot, body, now)
        elif isinstance(body, Error):
            self._on_error(slot, body, now)
        elif isinstance(body, Ready):
            self._on_ready(slot, body, now)
        elif not isinstance(body, Pong | Status):
            logger.warning("slot {}: unexpected {} from a worker", slot.index, type(body).__name__)

    def _slot_for(self, identity: bytes, *, count: bool = True) -> Slot | None:
        """The slot whose live process has routing id `identity`, or None (counted and logged)."""
        slot = self._by_identity.get(identity)
        if slot is not None and slot.proc is not None and slot.identity == identity:
            return slot
        if count:
            try:
                index = int(identity.decode("ascii").split(".")[0])
            except (UnicodeDecodeError, ValueError):
                index = -1
            if 0 <= index < len(self.all_slots) and identity.count(b".") == 1:
                self.stats["stale_frames"] += 1  # a late word from a previous incarnation of a slot
            else:
                self.stats["unknown_peers"] += 1
                logger.warning("dropped a frame from an unknown peer {!r}", identity[:32])
        return None

    def _on_ready(self, slot: Slot, body: Ready, now: float) -> None:
        if slot.state is not SlotState.STARTING or body.pid != slot.pid:
            logger.warning("slot {}: unexpected READY (state {}, pid {})", slot.index, slot.state, body.pid)
            return
        slot.sandbox = list(body.sandbox)
        missing = [name for name in self.required_layers if name not in body.sandbox]
        if missing:
            why = f"its sandbox lacks required layer(s) {', '.join(missing)}"
            logger.error("slot {}: worker {} {}", slot.index, slot.name, why)
            self.kill(slot, now, "SandboxViolation", why)
            return
        if not self.send(slot.identity, self._config_msg):
            return
        slot.state = SlotState.READY
        logger.info("slot {}: worker {} ready after {:.2f}s", slot.index, slot.name, now - slot.started_at)

    def _on_result(self, slot: Slot, body: Result, now: float) -> None:
        job = self._held(slot, body.job_id)
        if job is None:
            return
        self._free(slot)
        slot.jobs_done += 1
        if body.retiring:
            self._retiring(slot)
        # Hand the worker its next file before the bookkeeping: the record write and the queue update
        # then overlap with the worker's next job instead of adding to its idle time.
        self.dispatch(now, only=slot)
        self.outcomes.success(job, body)

    def _on_error(self, slot: Slot, body: Error, now: float) -> None:
        if body.job_id is None:
            logger.warning("slot {}: worker error: {}: {}", slot.index, body.category, body.message)
            return
        job = self._held(slot, body.job_id)
        if job is None:
            return
        slot.jobs_failed += 1
        self._free(slot)
        if self.jails is not None and slot.proc is not None:
            self.jails.rebase(slot.proc.pid)
        self.outcomes.worker_error(job, body)
        if body.category in _WORKER_EXITS_AFTER or body.retiring:
            slot.state = SlotState.STOPPING  # it exits after this answer; give it nothing new

    def _retiring(self, slot: Slot) -> None:
        logger.info(
            "slot {}: worker {} retires (its CPU budget is spent); a fresh one follows", slot.index, slot.name
        )
        slot.state = SlotState.STOPPING

    def _held(self, slot: Slot, job_id: str) -> Job | None:
        if slot.job is None or slot.job.wire_id != job_id:
            self.stats["stale_frames"] += 1
            logger.warning("slot {}: answer for job {} it does not hold; dropped", slot.index, job_id)
            return None
        return slot.job

    def _free(self, slot: Slot) -> None:
        slot.job = None
        if slot.state is SlotState.BUSY:
            slot.state = SlotState.READY

    # -- time passes -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Notice deaths, hangs, overdue jobs and due restarts; send heartbeats."""
        for slot in self.all_slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self._on_exit(slot, now)
            elif slot.state is SlotState.BACKOFF and now >= slot.retry_at and not self.stopping:
                if not slot.refill:
                    slot.restarts += 1
                slot.refill = False
                self._start(slot, now)
            elif slot.proc is not None:
                self._watch(slot, now)
        self.beat(now)

    def beat(self, now: float) -> None:
        """Heartbeat every live worker and sample its memory and CPU, if the interval has passed. Also called
        between batches of a long admission, so a big scan does not look like a dead coordinator."""
        if now < self._next_beat:
            return
        self._next_beat = now + self.sup.heartbeat_interval_s
        beat = Heartbeat()
        for slot in self.all_slots:
            if slot.state in (SlotState.READY, SlotState.BUSY):
                self.send(slot.identity, beat)
            slot.sample()

    def _watch(self, slot: Slot, now: float) -> None:
        if slot.kill is not None:
            if now >= slot.kill.escalate_at and slot.proc is not None:
                self.kill_group(slot.proc.pid, signal.SIGKILL)
                slot.kill.escalate_at = now + 3600  # sent once; the exit arrives through the pidfd
            return
        if slot.state is SlotState.STARTING:
            if now - slot.started_at > self.sup.start_timeout_s:
                self.kill(slot, now, "WorkerCrash", f"no READY within {self.sup.start_timeout_s:g}s")
            return
        if slot.state is SlotState.BUSY and now > slot.job_deadline + self.config.jobs.deadline_grace_s:
            self.kill(slot, now, "Timeout", f"job {slot.job.id if slot.job else '?'} overran its deadline")
            return
        silent = now - slot.last_seen
        if silent <= self.silence_limit or slot.state not in (
            SlotState.READY,
            SlotState.BUSY,
            SlotState.STOPPING,
        ):
            return
        verdict = self._hung(slot, now)
        if verdict:
            self.kill(slot, now, "Timeout", f"worker hung: silent for {silent:.1f}s, {verdict}")

    def _hung(self, slot: Slot, now: float) -> str | None:
        """Look at a silent worker from outside; a reason to kill it, or None to keep waiting."""
        if slot.ps is None:
            return "process not inspectable"
        try:
            status = slot.ps.status()
            cpu = sum(slot.ps.cpu_times()[:2])
        except psutil.Error:
            return None  # it is exiting; the pidfd will say so
        busy = slot.state is SlotState.BUSY
        return slot.silence.judge(status=status, cpu=cpu, busy=busy, now=now, limit=self.silence_limit)

    def _on_exit(self, slot: Slot, now: float) -> None:
        assert slot.proc is not None
        returncode = slot.proc.returncode
        code, text = describe_exit(returncode)
        aftermath = self.jails.exited(slot.proc.pid) if self.jails is not None else Aftermath()
        uptime = now - slot.started_at
        cause = slot.kill
        slot.last_exit = code
        expected = self.stopping and slot.kill is None
        log = logger.info if expected or (self.stopping and code in ("exit 0", "SIGTERM")) else logger.warning
        log("slot {}: worker {} (pid {}) {} after {:.1f}s", slot.index, slot.name, slot.pid, text, uptime)
        self._by_identity.pop(slot.identity, None)
        slot.detach()
        job = slot.job
        if job is not None and self.stopping:
            slot.job = None
            self.outcomes.interrupted(job)
        elif job is not None:
            slot.job = None
            slot.jobs_failed += 1
            death = classify_death(returncode, aftermath, (cause.category, cause.reason) if cause else None)
            self.outcomes.worker_died(job, death.category, death.reason, death.code)
        if self.stopping:
            slot.state = SlotState.STOPPED
            return
        self._after_death(slot, now, uptime)

    def _after_death(self, slot: Slot, now: float, uptime: float) -> None:
        delay = slot.policy.record_death(now, uptime)
        if delay is None:
            slot.state = SlotState.FAILED
            logger.error(
                "slot {}: FAILED: more than {} restarts in {:g}s; not restarting it",
                slot.index,
                self.sup.max_restarts,
                self.sup.restart_window_s,
            )
            return
        spare = None if slot.spare else self._ready_spare()
        if spare is not None:
            # A warm spare fills the slot at once; the spare itself is refilled after the backoff delay,
            # so a crash loop is still throttled.
            slot.adopt(spare)
            self._by_identity[slot.identity] = slot
            slot.restarts += 1
            spare.state, spare.retry_at = SlotState.BACKOFF, now + delay
            spare.refill = True  # its next start replaces what it gave away; it did not crash
            logger.info("slot {}: spare worker {} (pid {}) took over", slot.index, slot.name, slot.pid)
            return
        slot.state = SlotState.BACKOFF
        slot.retry_at = now + delay
        logger.info("slot {}: restarting in {:.2f}s", slot.index, delay)

    def _ready_spare(self) -> Slot | None:
        return next((s for s in self.spares if s.state is SlotState.READY and s.kill is None), None)

    # -- jobs out ----------------------------------------------------------------------------------------

    def dispatch(self, now: float, *, only: Slot | None = None) -> int:
        """Hand queued jobs to idle workers (or just to `only`), least recently used first; return how many
        went out."""
        if self.stopping:
            return 0
        if self.jobs.has_new():
            self.jobs.flush()  # a job goes out only once its row is committed
        sent = 0
        candidates = self.slots if only is None else [only]
        idle = [s for s in candidates if s.state is SlotState.READY and s.job is None]
        idle.sort(key=lambda s: s.last_dispatch)
        for slot in idle:
            job = self.jobs.pop_queued()
            if job is None:
                break
            deadline = job_deadline(self.config, job.key[2])
            self.jobs.mark_running(job, slot.name, lease_s=deadline + self.config.jobs.deadline_grace_s)
            msg = Execute(
                job_id=job.wire_id,
                path=str(job.path),
                bucket=job.bucket,
                relpath=job.relpath,
                output_path=str(job.output_path),
                deadline_s=deadline,
                attempt=job.attempts,
                size=job.key[2],
                mtime_ns=job.key[3],
                inode=job.key[4],
            )
            if not self.send(slot.identity, msg):
                self.jobs.undo_running(job, "worker unreachable")
                self.kill(slot, now, "WorkerCrash", "unreachable on its socket")
                continue
            slot.job = job
            slot.job_deadline = now + deadline
            slot.last_dispatch = now
            slot.state = SlotState.BUSY
            sent += 1
        return sent

    # -- stopping ----------------------------------------------------------------------------------------

    def begin_stop(self) -> None:
        """Take no new jobs and start no new workers."""
        self.stopping = True
        for slot in self.all_slots:
            if slot.state is SlotState.BACKOFF:
                slot.state = SlotState.STOPPED

    def busy(self) -> bool:
        """Whether any worker still holds a job."""
        return any(s.job is not None for s in self.slots)

    def alive(self) -> list[Slot]:
        """Slots whose process has not been reaped yet."""
        return [s for s in self.all_slots if s.proc is not None]

    def ask_to_exit(self) -> None:
        """SHUTDOWN to every live worker."""
        for slot in self.alive():
            if slot.state in RUNNING_STATES and slot.kill is None:
                self.send(slot.identity, Shutdown(reason="coordinator stopping"))
                slot.state = SlotState.STOPPING

    def force_stop(self, now: float) -> None:
        """SIGTERM, then SIGKILL after the grace, for every worker still alive."""
        for slot in self.alive():
            self.kill(slot, now, "WorkerCrash", "coordinator stopping")

    def pidfds(self) -> dict[int, Slot]:
        """The pidfds to poll for exits."""
        return {s.pidfd: s for s in self.all_slots if s.pidfd is not None}

    def counts(self) -> dict[str, int]:
        """Slots by state."""
        out = {state.value: 0 for state in SlotState}
        for slot in self.slots:
            out[slot.state.value] += 1
        return out


def job_deadline(config: Config, size: int | None) -> float:
    """A job's deadline: the base, plus the per-MiB allowance for its input's size."""
    jobs = config.jobs
    return jobs.deadline_s + jobs.deadline_per_mb_s * (size or 0) / (1024 * 1024)
