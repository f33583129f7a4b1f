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

Jobs out: only READY, idle workers whose circuit breaker is closed (or half-open, awaiting its one probe)
are candidates, none while an operator has drained dispatch, and a single probe while the fleet guard has
paused it; the balancer strategy picks among them. Every job's end is a verdict for the slot's breaker:
crashes, hangs, timeouts and protocol errors count against it, a bad file never does.

The supervisor is three classes in three files: this one (frames in, time passing, jobs out, breaker
bookkeeping), `replacing.Replacing` (deaths, planned exits, spares) and `operations.Operations` (what
`ob-ctl` asks for). Still past our usual ~400 lines: frames, ticks and dispatch share the slot states and
read best together. Pure pieces live elsewhere: `backoff`, `breaker`, `fleet`, `balancer` (policies over
(events, now)), `silence` (hung or busy), `outcomes` (job endings), `policies` (config to policy objects).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import psutil
from loguru import logger

from coordinator.balancer import make_strategy
from coordinator.breaker import CircuitBreaker
from coordinator.config import Config
from coordinator.fleet import FleetGuard
from coordinator.jails import Jails
from coordinator.jobs import Job
from coordinator.operations import Operations
from coordinator.outcomes import Outcomes
from coordinator.policies import breaker_policy, config_message, fleet_policy, job_deadline, restart_policy
from coordinator.queue import JobQueue
from coordinator.replacing import PLANNED_EXIT_S, Replacing
from coordinator.slots import Kill, Slot
from coordinator.spawn import Spawner, signal_group
from coordinator.states import RUNNING_STATES, BreakerState, SlotState
from protocol.codec import DecodeError, VersionMismatch, decode
from protocol.messages import (
    Body,
    ContextRules,
    Error,
    Execute,
    Heartbeat,
    Ping,
    Pong,
    Ready,
    Result,
    Shutdown,
    Status,
)

Send = Callable[[bytes, Body], bool]
KillGroup = Callable[[int, signal.Signals], bool]

# Error categories that mean the worker itself is about to exit (it abandons a job it cannot stop).
_WORKER_EXITS_AFTER = frozenset({"Timeout"})
#: Answers that are the worker's or the deployment's fault, not the file's: they count against the slot's
#: circuit breaker. Everything else (FileContent, FileAccess, PatternMatching, ...) shows the worker works.
INFRASTRUCTURE_ERRORS = frozenset({"Timeout", "WorkerCrash", "Protocol"})


class Supervisor(Operations, Replacing):
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
        # The `.bucket-include` rules a job goes out with (`coordinator.include_rules.JobContexts.for_job`).
        self.context_for: Callable[[Job], ContextRules | None] | None = None
        n = config.service.workers
        self.slots = [self._new_slot(i) for i in range(n)]
        self.spares = [self._new_slot(n + i, spare=True) for i in range(self.sup.spare_workers)]
        self._next_index = n + self.sup.spare_workers  # slot numbers are never reused (scale up, then down)
        self._by_identity: dict[bytes, Slot] = {}
        self.stopping = False
        self.paused: str | None = None  # why dispatch is paused by an operator (`ob-ctl drain`)
        self.balancer = make_strategy(config.balancer.strategy, config.balancer.weights)
        self.fleet = FleetGuard(fleet_policy(config))
        self._fleet_trips = 0
        self._recycling: Slot | None = None  # automatic recycling replaces one slot at a time
        self._rss_warned = False
        self.stats = {
            "bad_frames": 0,
            "stale_frames": 0,
            "unknown_peers": 0,
            "version_mismatches": 0,
            "handler_errors": 0,
            "breaker_transitions": 0,
            "recycles": 0,
            "restarts": 0,
        }
        self._next_beat = 0.0
        self._config_msg = config_message(config)
        self.config_generation = 0  # bumped when a reload changes what workers are told in CONFIG

    def _new_slot(self, index: int, *, spare: bool = False) -> Slot:
        return Slot(
            index, restart_policy(self.config), CircuitBreaker(breaker_policy(self.config)), spare=spare
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
            # A crash like any other: the breaker counts it and the backoff throttles the next try.
            logger.error("slot {}: could not start a worker: {}", slot.index, exc)
            if not slot.spare:
                self._verdict(slot, now, f"could not start a worker: {exc}")
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
        elif isinstance(body, Pong):
            if body.nonce == slot.ping_nonce and slot.ping_sent_at is not None:
                slot.ping_rtt_s = max(0.0, now - slot.ping_sent_at)
        elif not isinstance(body, Status):
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
            if 0 <= index < self._next_index and identity.count(b".") == 1:
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
        slot.config_generation = self.config_generation
        # What this process was told: it beats at this interval and is judged by it until it is recycled,
        # whatever a reload says meanwhile.
        slot.beat_interval, slot.silence_limit = self.sup.heartbeat_interval_s, self.silence_limit
        slot.state = SlotState.READY
        if self._recycling is slot:
            self._recycling = None  # its replacement is up: the next slot may be recycled
        logger.info("slot {}: worker {} ready after {:.2f}s", slot.index, slot.name, now - slot.started_at)
        if slot.plan is not None:  # scaled down or restarted while it was starting
            self._retire(slot, now, slot.plan)

    def _on_result(self, slot: Slot, body: Result, now: float) -> None:
        job = self._held(slot, body.job_id)
        if job is None:
            return
        self._free(slot)
        slot.jobs_done += 1
        slot.proc_jobs += 1
        self._verdict(slot, now, None)
        if body.retiring:
            self._retire(slot, now, "its CPU budget is spent", ask=False)
        else:
            self._maybe_retire(slot, now)
        # Hand out the next file before the bookkeeping: the record write and the queue update then
        # overlap with the worker's next job instead of adding to its idle time.
        self.dispatch(now)
        self.outcomes.success(job, body)

    def _on_error(self, slot: Slot, body: Error, now: float) -> None:
        if body.job_id is None:
            logger.warning("slot {}: worker error: {}: {}", slot.index, body.category, body.message)
            return
        job = self._held(slot, body.job_id)
        if job is None:
            return
        slot.jobs_failed += 1
        slot.proc_jobs += 1
        self._free(slot)
        if self.jails is not None and slot.proc is not None:
            self.jails.rebase(slot.proc.pid)
        infrastructure = body.category in INFRASTRUCTURE_ERRORS
        self._verdict(slot, now, f"{body.category}: {body.message}" if infrastructure else None)
        self.outcomes.worker_error(job, body)
        if body.retiring:
            self._retire(slot, now, "its CPU budget is spent", ask=False)
        elif body.category in _WORKER_EXITS_AFTER:
            slot.state = SlotState.STOPPING  # it exits after this answer; give it nothing new
            slot.charged = True  # its breaker has counted this failure already
        else:
            self._maybe_retire(slot, now)

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

    # -- breakers and the fleet guard --------------------------------------------------------------------

    def _verdict(self, slot: Slot, now: float, failure: str | None) -> None:
        """How the end of a job (or a death) counts for the slot's breaker and, if the job was the fleet
        guard's probe, for the fleet. `failure` is None when the worker did its part."""
        probe, slot.fleet_probe = slot.fleet_probe, False
        if failure is None:
            slot.breaker.succeeded(now)
            if probe:
                self.fleet.succeeded(now)
        else:
            slot.breaker.failed(now, failure)
            if probe:
                self.fleet.failed(now)
        self._breaker_news(slot, now)

    def _breaker_news(self, slot: Slot, now: float) -> None:
        """Log and count the slot's breaker transitions; tell the fleet guard when the number of open
        breakers changed."""
        changed = False
        for t in slot.breaker.take_transitions():
            changed = True
            self.stats["breaker_transitions"] += 1
            log = logger.warning if t.new is BreakerState.OPEN else logger.info
            log("slot {}: breaker {} -> {}: {}", slot.index, t.old.value, t.new.value, t.reason)
        if changed:
            opened = sum(s.breaker.state is not BreakerState.CLOSED for s in self.slots)
            self.fleet.breakers_changed(now, opened, len(self.slots))
        self._fleet_news()

    def _fleet_news(self) -> None:
        for line in self.fleet.take_events():
            logger.warning("fleet: {}", line)
        if self.fleet.trips != self._fleet_trips:
            # A new pause: an answer to a probe sent before it must not count for this one.
            self._fleet_trips = self.fleet.trips
            self.forget_fleet_probes()

    def forget_fleet_probes(self) -> None:
        """No job out counts as the fleet guard's probe any more (a new trip, or an operator's resume)."""
        for slot in self.slots:
            slot.fleet_probe = False

    def _restarted(self, slot: Slot, now: float) -> None:
        """A crashed worker is being replaced: counted for the slot, and for the fleet's restart rate."""
        slot.restarts += 1
        self.stats["restarts"] += 1
        self.fleet.restarted(now)
        self._fleet_news()

    # -- time passes -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Notice deaths, hangs, overdue jobs and due restarts; send heartbeats."""
        for slot in self.all_slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self._on_exit(slot, now)
            elif slot.state is SlotState.BACKOFF and now >= slot.retry_at and not self.stopping:
                if not slot.refill:
                    self._restarted(slot, now)
                slot.refill = False
                self._start(slot, now)
            elif slot.state is SlotState.FAILED and now >= slot.retry_at and not self.stopping:
                logger.warning("slot {}: trial start after its cool-down", slot.index)
                slot.policy.begin_trial()
                self._restarted(slot, now)
                self._start(slot, now)
            elif slot.proc is not None:
                self._watch(slot, now)
        self.beat(now)

    def beat(self, now: float) -> None:
        """Heartbeat every live worker and sample its memory and CPU, if the interval has passed. Also called
        between batches of a long admission, so a big scan does not look like a dead coordinator."""
        if now < self._next_beat:
            return
        interval = self.sup.heartbeat_interval_s
        for slot in self.all_slots:
            if slot.state in (SlotState.READY, SlotState.BUSY):
                # A PING is our heartbeat (any message counts for the worker), and its PONG times the round
                # trip through the worker's loop: `ob-ctl workers` shows it.
                slot.ping_nonce += 1
                slot.ping_sent_at = now
                self.send(slot.identity, Ping(nonce=slot.ping_nonce))
                interval = min(interval, slot.beat_interval)  # a worker told a shorter one before a reload
            slot.sample()
            if slot.state is not SlotState.READY or slot.job is not None:
                continue
            if not slot.spare:
                self._maybe_retire(slot, now)  # an idle worker that grew past max_rss_mb
            elif (slot.outdated or slot.config_generation < self.config_generation) and not self.stopping:
                self._retire(slot, now, "the configuration changed")  # an idle spare: no need to take turns
        self._next_beat = now + interval

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
        if slot.state is SlotState.STOPPING and slot.plan is not None:
            # Asked to exit, it stops beating: its deadline decides, not the silence rule (which would
            # charge a planned exit as a hang).
            if now > slot.plan_deadline:
                self.kill(
                    slot, now, "planned", f"still running {PLANNED_EXIT_S:g}s after it was asked to exit"
                )
            return
        if slot.state is SlotState.BUSY and now > slot.job_deadline + self.config.jobs.deadline_grace_s:
            self.kill(slot, now, "Timeout", f"job {slot.job.id if slot.job else '?'} overran its deadline")
            return
        silent = now - slot.last_seen
        if silent <= slot.silence_limit or slot.state not in (
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
        return slot.silence.judge(status=status, cpu=cpu, busy=busy, now=now, limit=slot.silence_limit)

    # -- jobs out ----------------------------------------------------------------------------------------

    def dispatch(self, now: float) -> int:
        """Hand queued jobs to the workers that may take one, in the balancer's order; return how many went
        out. Candidates: READY and idle, not draining, breaker closed or half-open awaiting its probe; and
        nothing at all while an operator has paused dispatch, or just one probe while the fleet guard has."""
        if self.stopping or self.paused is not None:
            return 0
        if self.jobs.has_new():
            self.jobs.flush()  # a job goes out only once its row is committed
        if not self.jobs.has_queued():
            return 0  # (the common case on every RESULT of a drained queue: skip the scan of the slots)
        candidates = [
            s
            for s in self.slots
            if s.state is SlotState.READY
            and s.job is None
            and (s.breaker.state is BreakerState.CLOSED or self._may_probe(s, now))
        ]
        sent = 0
        fleet = self.fleet
        while candidates:
            probe = fleet.paused
            if probe and not fleet.allows(now):
                break
            job = self.jobs.pop_queued()
            if job is None:
                break
            slot = self.balancer.pick(candidates)
            candidates.remove(slot)
            if not self._send_job(slot, job, now):
                continue
            sent += 1
            slot.breaker.dispatched(now)
            if probe:
                fleet.dispatched(now)
                slot.fleet_probe = True
                logger.info("fleet: job {} goes to slot {} as the probe", job.id, slot.index)
        return sent

    def _may_probe(self, slot: Slot, now: float) -> bool:
        allowed = slot.breaker.allows(now)  # may move an open breaker to half-open: log it
        self._breaker_news(slot, now)
        return allowed

    def _send_job(self, slot: Slot, job: Job, now: float) -> bool:
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
            context=self._context(job),
        )
        if not self.send(slot.identity, msg):
            self.jobs.undo_running(job, "worker unreachable")
            self.kill(slot, now, "WorkerCrash", "unreachable on its socket")
            return False
        slot.job = job
        slot.job_deadline = now + deadline
        slot.last_dispatch = now
        slot.state = SlotState.BUSY
        return True

    def _context(self, job: Job) -> ContextRules | None:
        """The `.bucket-include` rules `job` goes out with; on any failure none (logged): rule files are
        input a dropper controls, and no job may be held up, nor the loop stopped, by one."""
        if self.context_for is None:
            return None
        try:
            return self.context_for(job)
        except Exception:
            logger.exception("job {}: its .bucket-include rules could not be read; sent without them", job.id)
            return None

    # -- stopping ----------------------------------------------------------------------------------------

    def begin_stop(self) -> None:
        """Take no new jobs and start no new workers."""
        self.stopping = True
        for slot in self.all_slots:
            if slot.state in (SlotState.BACKOFF, SlotState.FAILED):
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
