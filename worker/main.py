"""The worker's main loop: a DEALER to the coordinator, heartbeats both ways, one job at a time.

    READY ──► (CONFIG) ──► loop: EXECUTE → runner thread → RESULT | ERROR
                                 HEARTBEAT every interval, in both directions
                                 SHUTDOWN, SIGTERM or a silent coordinator → exit

The loop never blocks on anything but `zmq.Poller.poll`, whose timeout is the next heartbeat, so a busy
worker keeps heartbeating while a stopped (SIGSTOP) or wedged one falls silent and is replaced.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable

import psutil
import zmq
from loguru import logger

from protocol.codec import DecodeError, VersionMismatch, decode, encode
from protocol.messages import (
    Body,
    Cancel,
    Config,
    Error,
    Execute,
    Heartbeat,
    Ping,
    Pong,
    Ready,
    Result,
    Shutdown,
)
from protocol.sandbox import LayerReport, SandboxSpec
from protocol.version import MAX_FRAME_BYTES
from worker import __version__
from worker.jobs import run_job
from worker.pipeline import limits
from worker.reaper import become_subreaper, kill_leftovers
from worker.runner import JobRunner
from worker.sandbox import apply_late, begin_job, cpu_budget_left, verify

#: A silent coordinator is given this many liveness windows before we leave. Its death is caught at once by
#: the parent-death signal; silence is the fallback, and a coordinator admitting a huge scan may
#: legitimately fall quiet for a few seconds.
COORDINATOR_GRACE = 3

#: Allocations between young-generation collections (CPython's default is 700). Processing a file allocates
#: a lot and frees nearly all of it by refcount; at 700 the cyclic collector took ~7% of a worker's CPU.
GC_YOUNG_THRESHOLD = 20_000
#: How long a sandboxed worker waits for its connection before the late sandbox stage (new unix sockets
#: are refused from then on, so it must come after the connect).
CONNECT_TIMEOUT_S = 10.0
#: Exit codes the coordinator can tell apart.
EXIT_OK = 0
EXIT_COORDINATOR_LOST = 3
EXIT_JOB_ABANDONED = 4
EXIT_NO_CONFIG = 5
#: sysexits.h EX_CONFIG: this worker cannot run with this coordinator (another protocol version); a restart
#: would fail the same way, so the coordinator fails the slot at once instead of retrying it.
EXIT_CONFIG = 78


class WorkerLoop:
    """One worker process's whole life after start-up."""

    def __init__(
        self,
        endpoint: str,
        slot: int,
        generation: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sandbox: tuple[SandboxSpec, list[LayerReport]] | None = None,
    ):
        self.endpoint = endpoint
        self.slot = slot
        self.generation = generation
        self.name = f"{slot}.{generation}"
        self.clock = clock
        self.config: Config | None = None
        self.current: Execute | None = None
        self.current_deadline = 0.0
        self.bad_frames = 0
        self._stop_reason: str | None = None
        self._proc = psutil.Process()
        self.sandbox = sandbox
        self.layers: list[str] = ["session", "pdeathsig"]  # what READY reports (verified layers only)
        self._monitor: zmq.Socket[bytes] | None = None
        self._retire = False
        if sandbox is not None:
            spec = sandbox[0]
            limits.configure([*spec.read, *spec.write, *spec.execute, spec.scratch], list(spec.cgroup))

    # -- set-up ------------------------------------------------------------------------------------------

    def _open_socket(self) -> tuple[zmq.Context[zmq.Socket[bytes]], zmq.Socket[bytes]]:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        # Watched from before the connect, so the CONNECTED event cannot slip past (see _finish_sandbox).
        self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED) if self.sandbox is not None else None
        sock.connect(self.endpoint)
        return ctx, sock

    def _send(self, sock: zmq.Socket[bytes], body: Body) -> None:
        try:
            sock.send(encode(body), zmq.NOBLOCK)
        except zmq.Again:
            logger.warning("send queue to coordinator is full; dropped {}", type(body).__name__)

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until told to stop; return the process exit code."""
        gc.freeze()  # modules and models imported at start-up live as long as we do: never scan them
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        ctx, sock = self._open_socket()
        become_subreaper()
        if self.sandbox is not None:
            self._finish_sandbox(sock, *self.sandbox)
        runner = JobRunner(run_job(self.name, self._config, self._job_limits, self._job_cleanup), wake_w)
        try:
            return self._loop(sock, wake_r, runner)
        finally:
            # A retiring worker's last answer is still queued: give it a moment to leave.
            sock.close(linger=1000 if self._retire else 0)
            ctx.term()

    def _finish_sandbox(self, sock: zmq.Socket[bytes], spec: SandboxSpec, early: list[LayerReport]) -> None:
        """Once connected, close the last door (no new unix sockets), then check every layer from inside."""
        if not _wait_connected(sock, self._monitor, CONNECT_TIMEOUT_S):
            logger.warning(
                "not connected to {} after {:g}s; late sandbox stage skipped",
                self.endpoint,
                CONNECT_TIMEOUT_S,
            )
            late = LayerReport(name="seccomp", active=False, detail="never connected, late stage skipped")
        else:
            late = apply_late(spec)
        reports = verify(spec, [late if r.name == late.name else r for r in early])
        self.layers = [r.name for r in reports if r.active]
        missing = "; ".join(f"{r.name}: {r.detail}" for r in reports if not r.active)
        logger.info(
            "sandbox verified: {}{}", ", ".join(self.layers), f" (missing {missing})" if missing else ""
        )

    def _job_limits(self) -> None:
        """Called as each job starts: its own CPU allowance (RLIMIT_CPU is per process, not per job)."""
        if self.sandbox is not None and not begin_job(self.sandbox[0].limits):
            self._retire = True  # read by the loop once this job is answered

    def _job_cleanup(self) -> None:
        """Called as each job ends: nothing it started outlives it. When the worker's lifetime CPU budget
        (the hard RLIMIT_CPU) could not give the next job its full allowance, it retires after answering,
        and the coordinator starts a fresh worker: the next job gets SIGXCPU at its own limit, never the
        SIGKILL of the hard one."""
        kill_leftovers(list(self.sandbox[0].cgroup) if self.sandbox is not None else [])
        if self.sandbox is not None and cpu_budget_left() < self.sandbox[0].limits.cpu_s + 1:
            self._retire = True

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_reason = f"signal {signal.Signals(signum).name}"

    def _loop(self, sock: zmq.Socket[bytes], wake_r: int, runner: JobRunner) -> int:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        started = self.clock()
        self._send(sock, self._ready())
        interval, liveness = 1.0, 3
        last_heard = started
        next_beat = started + interval
        while True:
            if self._stop_reason:
                logger.info("stopping: {}", self._stop_reason)
                return EXIT_OK
            now = self.clock()
            timeout = max(0.0, min(next_beat, self.current_deadline if self.current else next_beat) - now)
            ready = dict(poller.poll(int(timeout * 1000)))
            now = self.clock()
            if wake_r in ready:
                _drain(wake_r)
            if ready.get(sock):
                for frame in _recv_all(sock):
                    last_heard = now
                    code = self._on_frame(sock, frame, runner)
                    if code is not None:
                        return code
                    if self.config:
                        interval, liveness = self.config.heartbeat_interval_s, self.config.liveness
            outcome = runner.take()
            if outcome is not None and self.current and outcome.job_id == self.current.job_id:
                if self._retire:  # told in the answer, so the coordinator sends no next job to a leaver
                    self._send(sock, outcome.body.model_copy(update={"retiring": True}))
                    self._stop_reason = "lifetime CPU budget spent: retiring for a fresh worker"
                    self.current = None
                    continue
                self._send(sock, outcome.body)
                self.current = None
            if self.current and now >= self.current_deadline:
                return self._abandon(
                    sock, "Timeout", f"job passed its deadline of {self.current.deadline_s:g}s"
                )
            if self.config is None and now - started > max(10.0, interval * liveness * 5):
                logger.error("no CONFIG from {} after READY; exiting", self.endpoint)
                return EXIT_NO_CONFIG
            if now - last_heard > interval * liveness * COORDINATOR_GRACE:
                logger.error("coordinator silent for {:.1f}s; exiting", now - last_heard)
                return EXIT_COORDINATOR_LOST
            if now >= next_beat:
                self._send(sock, self._heartbeat())
                next_beat = now + interval

    def _on_frame(self, sock: zmq.Socket[bytes], frame: bytes, runner: JobRunner) -> int | None:
        try:
            env = decode(frame)
        except VersionMismatch as exc:
            logger.error("coordinator speaks another protocol: {}", exc)
            return EXIT_CONFIG
        except DecodeError as exc:
            self.bad_frames += 1
            logger.warning("dropped a bad frame from the coordinator: {}", exc)
            return None
        body = env.body
        if isinstance(body, Config):
            self.config = body
            logger.debug("configured: heartbeat {}s, liveness {}", body.heartbeat_interval_s, body.liveness)
        elif isinstance(body, Execute):
            self._start(sock, body, runner)
        elif isinstance(body, Ping):
            self._send(sock, Pong(nonce=body.nonce))
        elif isinstance(body, Cancel):
            if self.current and self.current.job_id == body.job_id:
                return self._abandon(sock, "Timeout", "job cancelled by the coordinator")
        elif isinstance(body, Shutdown):
            logger.info("shutdown requested: {}", body.reason)
            return EXIT_OK
        elif not isinstance(body, Heartbeat):
            logger.warning("ignored unexpected {} from the coordinator", type(body).__name__)
        return None

    def _start(self, sock: zmq.Socket[bytes], job: Execute, runner: JobRunner) -> None:
        if self.config is None or self.current is not None:
            why = "not configured yet" if self.config is None else f"busy with {self.current.job_id}"  # type: ignore[union-attr]
            self._send(
                sock, Error(job_id=job.job_id, category="System", retryable=True, message=f"worker {why}")
            )
            return
        if self.config.pipeline == "noop":
            # The no-op pipeline only acknowledges: nothing untrusted runs, so no thread is needed.
            self._send(sock, Result(job_id=job.job_id, duration_s=0.0))
            return
        self.current = job
        self.current_deadline = self.clock() + job.deadline_s
        runner.submit(job)

    def _abandon(self, sock: zmq.Socket[bytes], category: str, message: str) -> int:
        """A running job cannot be stopped from outside its thread: answer for it and exit."""
        assert self.current is not None
        logger.warning("abandoning job {}: {}", self.current.job_id, message)
        self._send(sock, Error(job_id=self.current.job_id, category=category, message=message))  # type: ignore[arg-type]
        return EXIT_JOB_ABANDONED

    def _config(self) -> Config:
        assert self.config is not None  # jobs are refused until CONFIG arrives
        return self.config

    # -- messages ----------------------------------------------------------------------------------------

    def _ready(self) -> Ready:
        return Ready(
            slot=self.slot,
            generation=self.generation,
            pid=os.getpid(),
            version=__version__,
            capabilities=["file-facts", "note", "context"],  # context: `.bucket-include` rules in EXECUTE
            sandbox=self.layers,
        )

    def _heartbeat(self) -> Heartbeat:
        try:
            rss = self._proc.memory_info().rss
            cpu = sum(self._proc.cpu_times()[:2])
        except psutil.Error:
            rss, cpu = None, None
        return Heartbeat(
            state="busy" if self.current else "idle",
            job_id=self.current.job_id if self.current else None,
            rss_bytes=rss,
            cpu_time_s=cpu,
        )


def _recv_all(sock: zmq.Socket[bytes], limit: int = 256) -> list[bytes]:
    frames: list[bytes] = []
    for _ in range(limit):
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        frames.append(
            parts[-1] if len(parts) == 1 else b""
        )  # a multi-part frame is not ours: decode rejects b""
    return frames


def _wait_connected(sock: zmq.Socket[bytes], monitor: zmq.Socket[bytes] | None, timeout_s: float) -> bool:
    """Block until the socket's connection is up (a monitor event), or the timeout passes."""
    if monitor is None:
        return False
    try:
        if not monitor.poll(int(timeout_s * 1000)):
            return False
        return bool(monitor.recv_multipart())
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


__all__ = ["WorkerLoop", "Result"]
