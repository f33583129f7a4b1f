"""One worker slot: the process that fills it now, its counters, and its row in `ob-ctl workers`."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from coordinator.backoff import RestartPolicy
from coordinator.breaker import CircuitBreaker
from coordinator.jobs import Job
from coordinator.silence import SilenceWatch
from coordinator.states import SlotState


@dataclass
class Kill:
    """Why the supervisor is killing a worker, and when to escalate to SIGKILL."""

    category: str  # error category charged to the job it held: Timeout, WorkerCrash, Protocol
    reason: str
    escalate_at: float


@dataclass
class Slot:
    """A numbered place for one worker; the process in it is replaced, the slot stays."""

    index: int
    policy: RestartPolicy
    breaker: CircuitBreaker
    state: SlotState = SlotState.STOPPED
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ps: psutil.Process | None = None
    pidfd: int | None = None
    started_at: float = 0.0  # monotonic
    started_wall: float = 0.0
    last_seen: float = 0.0
    last_dispatch: float = 0.0
    job: Job | None = None
    job_deadline: float = 0.0
    jobs_done: int = 0
    jobs_failed: int = 0
    restarts: int = 0
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    retry_at: float = 0.0
    kill: Kill | None = None
    silence: SilenceWatch = field(default_factory=SilenceWatch)
    last_exit: str | None = None
    last_returncode: int | None = None  # as Popen has it: negative for a signal
    ping_nonce: int = 0
    ping_sent_at: float | None = None
    ping_rtt_s: float | None = None
    sandbox: list[str] = field(default_factory=list)
    spare: bool = False  # a warm spare: started and READY, never given jobs, takes over a dead slot
    refill: bool = False  # a spare waiting to be refilled after a takeover (not a restart)
    name: str = ""  # the process's `<slot>.<generation>` routing id (a promoted spare keeps its own)
    proc_jobs: int = 0  # jobs the current process has finished (recycling by count)
    plan: str | None = None  # why the current process is being retired on purpose (recycle, restart, scale)
    plan_deadline: float = 0.0  # when a worker asked to exit is killed instead
    removing: bool = False  # scaled away: the slot goes once its process has exited
    recycles: int = 0
    fleet_probe: bool = False  # the job it holds is the fleet guard's probe
    beat_interval: float = 1.0  # the heartbeat interval and silence limit this process was told in CONFIG
    silence_limit: float = 3.0
    config_generation: int = 0  # the supervisor's config generation this process was configured with
    outdated: bool = False  # its sandbox no longer matches the config (buckets changed): recycle it in turn
    charged: bool = False  # its breaker already counted this process's failure (it exits after a Timeout)

    @property
    def load(self) -> int:
        """Jobs in hand (the balancer's view; a worker has one job of credit)."""
        return 0 if self.job is None else 1

    @property
    def identity(self) -> bytes:
        return self.name.encode()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def attach(self, proc: subprocess.Popen[bytes], now: float, name: str) -> None:
        """A new process fills the slot."""
        self.name = name
        self.proc = proc
        self.ps = _ps(proc.pid)
        self.pidfd = _pidfd(proc.pid)
        self.state = SlotState.STARTING
        self.started_at = now
        self.started_wall = time.time()
        self.last_seen = now
        self.kill = None
        self.plan = None
        self.proc_jobs = 0
        self.charged = False
        self.outdated = False
        self.silence.reset()
        self.rss_bytes = self.cpu_percent = None
        self.ping_rtt_s = self.ping_sent_at = None
        if self.ps is not None:
            try:
                self.ps.cpu_percent(None)  # prime the sampler
            except psutil.Error:
                pass

    def adopt(self, spare: Slot) -> None:
        """Take over a READY spare's process: the slot is refilled without waiting for a start-up."""
        self.name, self.proc, self.ps, self.pidfd = spare.name, spare.proc, spare.ps, spare.pidfd
        self.started_at, self.started_wall, self.last_seen = (
            spare.started_at,
            spare.started_wall,
            spare.last_seen,
        )
        self.sandbox, self.rss_bytes, self.cpu_percent = spare.sandbox, spare.rss_bytes, spare.cpu_percent
        self.ping_nonce, self.ping_sent_at = spare.ping_nonce, spare.ping_sent_at
        self.ping_rtt_s = spare.ping_rtt_s
        self.kill = None
        self.plan = None
        self.proc_jobs = spare.proc_jobs
        self.config_generation = spare.config_generation
        self.outdated = spare.outdated
        self.beat_interval, self.silence_limit = spare.beat_interval, spare.silence_limit
        self.charged = False
        self.silence.reset()
        self.state = SlotState.READY
        spare.proc = spare.ps = spare.pidfd = None

    def detach(self) -> None:
        """The process is gone (and reaped)."""
        if self.pidfd is not None:
            os.close(self.pidfd)
        self.proc = self.ps = self.pidfd = None

    def sample(self) -> None:
        """RSS and CPU % from outside the worker (works for a silent or stopped one too)."""
        if self.ps is None:
            return
        try:
            with self.ps.oneshot():
                self.rss_bytes = self.ps.memory_info().rss
                self.cpu_percent = self.ps.cpu_percent(None)
        except psutil.Error:
            pass

    def row(self, now: float) -> dict[str, Any]:
        """This slot as `ob-ctl workers` shows it."""
        alive = self.proc is not None
        return {
            "slot": self.index,
            "name": self.name,
            "pid": self.pid,
            "state": "draining" if self.plan and self.state is SlotState.BUSY else self.state.value,
            "last_heartbeat_age_s": round(now - self.last_seen, 3) if alive else None,
            "jobs_done": self.jobs_done,
            "jobs_failed": self.jobs_failed,
            "restarts": self.restarts,
            "rss_bytes": self.rss_bytes,
            "cpu_percent": self.cpu_percent,
            "uptime_s": round(now - self.started_at, 3) if alive else None,
            "current_job": self.job.id if self.job else None,
            "current_file": str(self.job.path) if self.job else None,
            "last_exit": self.last_exit,
            "last_exit_code": self.last_returncode,
            "ping_ms": round(self.ping_rtt_s * 1000, 2) if alive and self.ping_rtt_s is not None else None,
            "retry_in_s": round(max(0.0, self.retry_at - now), 3)
            if self.state in (SlotState.BACKOFF, SlotState.FAILED)
            else None,
            "sandbox": list(self.sandbox),
            "spare": self.spare,
            "breaker": self.breaker.row(now),
            "recycles": self.recycles,
            "plan": self.plan,
            "removing": self.removing,
        }


def _ps(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _pidfd(pid: int) -> int | None:
    """A pidfd becomes readable the moment the process exits: death is noticed at once, not on a timer."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None
