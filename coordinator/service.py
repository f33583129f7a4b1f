"""The coordinator's one event loop: a single thread polling the worker socket, the control socket, worker
pidfds and a wake-up pipe, then letting each component act.

    wake pipe (watchdog thread, signals) ─┐
    ROUTER  workers.sock ─────────────────┼─► poll ─► supervisor.on_frame / control / watcher.poll
    ROUTER  control.sock ─────────────────┤           supervisor.tick (deaths, hangs, restarts, beats)
    pidfd per worker ─────────────────────┘           supervisor.dispatch (queued jobs → idle workers)

We chose a plain `zmq.Poller` loop over asyncio: every handler here is short and non-blocking, and the
poller lets raw fds (pidfds, the wake pipe) sit beside the ZeroMQ sockets with no extra machinery.

SIGTERM and SIGINT stop the service; SIGHUP reloads its config file (`coordinator.live`), between two turns
of the loop, like every other change: a signal handler only sets a flag, the wake-up fd wakes the poll.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
from loguru import logger

from coordinator.config import BucketConfig, Config
from coordinator.control import ControlServer
from coordinator.daemon import remove_pid_file, write_pid_file
from coordinator.health import Health
from coordinator.include_rules import JobContexts
from coordinator.jails import Jails
from coordinator.live import LiveConfig, Refused
from coordinator.lock import StateLock
from coordinator.outcomes import Outcomes
from coordinator.paths import check_socket_paths, socket_paths
from coordinator.queue import JobQueue
from coordinator.records import RecordWriter
from coordinator.recovery import RecoveryReport, recover
from coordinator.spawn import Spawner, make_spawner
from coordinator.status_line import StatusLine
from coordinator.supervisor import Supervisor
from coordinator.telemetry import Telemetry
from coordinator.watcher import Sighting, Watcher
from coordinator.worker_logs import WorkerLogs
from protocol.codec import encode
from protocol.messages import Body
from protocol.sandbox import LayerReport
from protocol.version import MAX_FRAME_BYTES

#: Allocations between young-generation collections (CPython's default is 700). The coordinator keeps one
#: object per live job, 100,000 of them after a big scan, and collects them by refcount anyway; at 700 the
#: cyclic collector ran thousands of times during such a scan and took ~10% of its time.
GC_YOUNG_THRESHOLD = 50_000
#: Longest the loop sleeps with nothing due: bounds the delay of timer-driven decisions.
MAX_TICK_S = 0.1
#: New jobs are committed in batches of this many while a big scan is admitted (bounds peak memory).
ADMIT_BATCH = 5000
#: How often the supervisor looks at its timers (kills, hangs, restarts, heartbeats) when no worker exited:
#: a worker's exit wakes it at once through its pidfd.
SUPERVISOR_TICK_S = 0.02


class Service:
    """Everything one coordinator owns, and the loop that drives it."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        """`config` is `load_config(config_path, overrides)`; the path and the overrides are kept so that a
        reload reads the same file and puts the same command-line flags over it."""
        check_socket_paths(config)
        self.config = config
        self.clock = clock
        self.pid = os.getpid()
        self.state_dir = config.service.state_dir.expanduser().absolute()
        self.run_dir = self.state_dir / "run"
        self.buckets: list[BucketConfig] = config.buckets
        self.started_at = clock()
        self.health = Health()
        self.jobs: JobQueue
        self.records: RecordWriter
        self.outcomes: Outcomes
        self.recovery = RecoveryReport()
        self.supervisor: Supervisor
        self.watcher: Watcher
        self.live: LiveConfig
        self._config_path = config_path
        self._overrides = dict(overrides or {})
        self._outputs: dict[str, str] = {}
        self._signal: int | None = None
        self._reload_requested = False
        self._signals_seen = 0
        self._wake_w = -1
        self._workers_endpoint = ""
        self.jails = Jails(config, self.run_dir)
        self.worker_logs = WorkerLogs()
        self.status_line = StatusLine(config.service.status_interval_s)
        self.sandbox_reports: list[LayerReport] = []
        self.sandbox_required: list[str] = []
        #: Called once everything has started, just before the loop: a daemon's parent waits for it.
        self.on_ready: Callable[[], None] | None = None

    # -- set-up ------------------------------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.run_dir, 0o700)  # mkdir's mode is masked by umask, and the dir may predate us
        for bucket in self.buckets:
            bucket.path.expanduser().absolute().mkdir(parents=True, exist_ok=True)
            self.config.bucket_output(bucket).mkdir(parents=True, exist_ok=True)

    def _bind(self, ctx: zmq.Context[zmq.Socket[bytes]], kind: int, path: Path) -> zmq.Socket[bytes]:
        sock = ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        path.unlink(missing_ok=True)  # left by a coordinator that died; we hold the lock, so it is ours
        sock.bind(f"ipc://{path}")
        return sock

    def _send(self, router: zmq.Socket[bytes]) -> Callable[[bytes, Body], bool]:
        def send(identity: bytes, body: Body) -> bool:
            try:
                # Two plain sends rather than send_multipart: half the cost, on the path of every job.
                router.send(identity, _SNDMORE_NOBLOCK)
                router.send(encode(body), _NOBLOCK)
                return True
            except zmq.ZMQError as exc:  # EHOSTUNREACH (ROUTER_MANDATORY) or EAGAIN: the peer is not there
                logger.debug("send {} to {!r} failed: {}", type(body).__name__, identity, exc)
                return False

        return send

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except (BlockingIOError, OSError):  # a full pipe already means "wake up"
            pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
            return
        self._signal = signum
        self._signals_seen += 1

    def adopt_config(self, config: Config) -> None:
        """Run with `config` from now on (checked, and its buckets already watched: `coordinator.live`):
        the notes dirs new files are admitted with, job outcomes (retries), the next workers' sandboxes and
        niceness, and the watcher's timers. The supervisor is told apart (`Supervisor.reconfigure`)."""
        if config.supervisor.worker_nice != self.config.supervisor.worker_nice:
            self.supervisor.spawn = self._spawner(config)  # for the workers started from now on
        self.config = config
        self.buckets = config.buckets
        self._outputs = {b.name: f"{config.bucket_output(b)}{os.sep}" for b in config.buckets}
        self.outcomes.config = config
        self.jails.reconfigure(config)
        self.watcher.tune(config.watcher.settle_s, config.watcher.rescan_interval_s)
        self.watcher.set_excluded_dirs(excluded_dirs(config, self.state_dir))
        self.status_line.interval_s = config.service.status_interval_s
        if hasattr(self, "contexts"):
            self.contexts.reconfigure(config)
        if hasattr(self, "telemetry"):
            self.telemetry.reconfigure(config, self.clock())

    def _spawner(self, cfg: Config) -> Spawner:
        return make_spawner(
            self._workers_endpoint,
            log_level=cfg.service.log_level,
            log_json=cfg.service.log_json,
            nice=cfg.supervisor.worker_nice,
            jails=self.jails,
            logs=self.worker_logs,
        )

    def request_stop(self) -> None:
        """Stop as on SIGTERM (`ob-ctl stop`): the stop sequence begins at the end of this loop turn."""
        self._on_signal(signal.SIGTERM, None)

    def reload(self, why: str) -> dict[str, list[str]]:
        """Re-read the config file and apply what can change at run time (see `coordinator.reload`);
        raises `coordinator.live.Refused`, already logged, when the new config is refused."""
        return self.live.reload(why)

    # -- run ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, loop until a signal ends it, stop everything; return the exit code."""
        gc.freeze()  # what start-up built (modules, config, models) lives as long as we do: never scan it
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        self._prepare_dirs()
        lock = StateLock(self.run_dir)
        lock.acquire()
        wake_r, self._wake_w = os.pipe()
        for fd in (wake_r, self._wake_w):
            os.set_blocking(fd, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        old_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        workers_path, control_path = socket_paths(self.state_dir)
        self._workers_endpoint = f"ipc://{workers_path}"
        router = self._bind(ctx, zmq.ROUTER, workers_path)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        control_sock = self._bind(ctx, zmq.ROUTER, control_path)
        try:
            write_pid_file(self.run_dir)  # holding the lock: a pid file naming anyone else is stale
            cfg = self.config
            self.jails.open()
            required = self._check_sandbox()
            self.jobs = JobQueue(self.state_dir / "queue.db")
            # A bucket gone from the config keeps its queued jobs, held until a bucket of that name returns.
            for name, count in self.jobs.park_all_except(b.name for b in self.buckets).items():
                if count:
                    logger.warning(
                        "bucket {} is not in the config: its {} queued job(s) stay parked", name, count
                    )
            self.records = RecordWriter(self.state_dir / "records")
            self.outcomes = Outcomes(cfg, self.jobs, self.records, self.health)
            # Before recovery, so a job it ends (a record adopted, a job quarantined) is counted too.
            self.telemetry = Telemetry(self, self.clock())
            self.outcomes.on_end = self.telemetry.job_ended
            self.recovery = recover(self.jobs, self.records, self.outcomes)
            # A bucket whose root or notes dir changed while we were stopped: its unfinished jobs follow it
            # (else they would read a path that is gone, or write notes where no sandbox lets them).
            moved = self.jobs.relocate_all(
                {
                    b.name: (os.path.abspath(b.path.expanduser()), str(cfg.bucket_output(b)))
                    for b in self.buckets
                }
            )
            if moved:
                logger.warning("{} unfinished job(s) follow their bucket's new root or notes dir", moved)
            self.supervisor = Supervisor(
                cfg,
                self.jobs,
                self.outcomes,
                send=self._send(router),
                spawn=self._spawner(cfg),
                jails=self.jails,
            )
            self.supervisor.required_layers = required
            self.contexts = JobContexts(cfg, self.jobs)
            self.supervisor.context_for = self.contexts.for_job
            self.watcher = Watcher(
                [
                    (b.name, b.path.expanduser().absolute(), list(b.patterns), list(b.ignore))
                    for b in self.buckets
                ],
                temp_ignore=list(cfg.watcher.temp_ignore),
                exclude_dirs=excluded_dirs(cfg, self.state_dir),
                settle_s=cfg.watcher.settle_s,
                rescan_interval_s=cfg.watcher.rescan_interval_s,
                wake=self._wake,
                polling=cfg.watcher.polling,
                clock=self.clock,
                known=self.jobs.knows,
            )
            self.adopt_config(cfg)  # (the notes dir of each bucket, for admitting its files)
            self.live = LiveConfig(self, self._config_path, self._overrides)
            control = ControlServer(control_sock, self)
            logger.info(
                "coordinator {} starting: {} workers, buckets {}, state dir {}",
                self.pid,
                cfg.service.workers,
                ", ".join(str(b.path) for b in self.buckets),
                self.state_dir,
            )
            self.supervisor.start_all(self.clock())
            self.watcher.start()
            if self.on_ready is not None:
                self.on_ready()
            self._loop(router, control, wake_r)
            self.jobs.flush()
            self.telemetry.final(self.clock())  # the last snapshot and reports, with every job's end in them
            logger.info("coordinator {} stopped; jobs {}", self.pid, self.jobs.counts())
            return 0
        finally:
            self._kill_leftovers()
            for step in (self.worker_logs.close, self.jails.close):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - one failed clean-up step must not skip the rest
                    logger.error("while stopping: {} failed: {}", step.__qualname__, exc)
            if hasattr(self, "jobs"):
                self.jobs.close()
            if hasattr(self, "records"):
                self.records.close()
            router.close(linger=0)
            control_sock.close(linger=0)
            ctx.term()
            for path in (workers_path, control_path):
                path.unlink(missing_ok=True)
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(self._wake_w)
            remove_pid_file(self.run_dir)  # before the lock goes: the next coordinator's file is never ours
            lock.release()

    def _loop(self, router: zmq.Socket[bytes], control: ControlServer, wake_r: int) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(control.sock, zmq.POLLIN)
        poller.register(wake_r, zmq.POLLIN)
        polled_fds: set[int] = set()
        sup = self.supervisor
        stop = _Stopper(self)
        last_watch = last_tick = float("-inf")
        while True:
            now = self.clock()
            pidfds = sup.pidfds()
            log_fds = self.worker_logs.fds()
            wanted = pidfds.keys() | log_fds
            for fd in polled_fds - wanted:
                poller.unregister(fd)
            for fd in wanted - polled_fds:
                poller.register(fd, zmq.POLLIN)
            polled_fds = set(wanted)
            timeout = MAX_TICK_S
            for due in (self.watcher.next_due() if not stop.active else None, self._commit_due()):
                if due is not None:
                    timeout = min(timeout, max(0.0, due - now))
            ready = dict(poller.poll(int(timeout * 1000)))
            now = self.clock()
            if wake_r in ready:
                _drain(wake_r)
            if ready.get(router):
                self._receive(router, now)
            if ready.get(control.sock):
                control.handle_ready()
            for fd in log_fds:
                if fd in ready:
                    self.worker_logs.read(fd)
            # The watcher and the supervisor's timers run when something woke them or is due, and at least
            # every MAX_TICK_S; not on every RESULT (under load that was tens of µs a file for nothing).
            due = self.watcher.next_due()
            woken = wake_r in ready or (due is not None and due <= now) or now - last_watch >= MAX_TICK_S
            if not stop.active and woken:
                last_watch = now
                self._admit(self.watcher.poll())
            # Commit new jobs before anything leaves: a job a worker holds, or a record names, has a row.
            if self.jobs.has_new():
                self.jobs.flush()
            self._record_not_files()
            if any(fd in ready for fd in pidfds) or now - last_tick >= SUPERVISOR_TICK_S or stop.active:
                last_tick = now
                sup.tick(now)
                try:
                    self.live.tick()
                except Exception:  # (a database that says no): logged; retried at the next tick
                    logger.exception("releasing a new bucket's jobs failed")
            sup.dispatch(now)
            self.jails.tick()  # after dispatch: a dead worker's clean-up never delays its job's retry
            self.jobs.flush_if_due()
            self.telemetry.tick(now)
            if self.status_line.due(now):
                self._log_status(now)
            if self._reload_requested and not stop.active:
                self._reload_requested = False
                try:
                    self.reload("SIGHUP")
                except Refused:
                    pass  # logged as one line; the running config stays
                except Exception:  # a bug in applying a reload must not take every worker and job down
                    logger.exception("config reload (SIGHUP) failed")
            if self._signal is not None:
                stop.request(now, signal.Signals(self._signal).name, urgent=self._signals_seen > 1)
                self._signal = None
            if stop.active and stop.step(now):
                return

    def _commit_due(self) -> float | None:
        # The queue's commit timer runs on time.monotonic(); translate it to our clock.
        due = self.jobs.flush_due()
        return None if due is None else self.clock() + max(0.0, due - time.monotonic())

    def _receive(self, router: zmq.Socket[bytes], now: float, limit: int = 1000) -> None:
        for _ in range(limit):
            try:
                parts = _recv_parts(router)
            except zmq.Again:
                return
            if len(parts) != 2:
                self.supervisor.stats["bad_frames"] += 1
                logger.warning("dropped a {}-part message on the worker socket", len(parts))
                continue
            try:
                self.supervisor.on_frame(parts[0], parts[1], now)
            except Exception:
                # A bug in handling one message must not take every worker and job down with it.
                self.supervisor.stats["handler_errors"] += 1
                logger.exception("error while handling a message from {!r}", parts[0][:32])

    def _admit(self, sightings: list[Sighting]) -> None:
        """Settled sightings become jobs, unless their version is known; a non-regular entry is recorded
        as a FileAccess error (after its row is committed) and never opened."""
        add, outputs = self.jobs.add, self._outputs
        for i, s in enumerate(sightings, 1):
            bucket, relpath = s.key[0], s.key[1]  # (the properties cost a call each, per file of a scan)
            add(
                s.key,
                path=s.abspath,
                relpath=relpath,
                output_path=f"{outputs[bucket]}{relpath}.obs.md",
                kind=s.kind,
            )
            if i % ADMIT_BATCH == 0:
                self.jobs.flush()  # a 100k-file scan committed in one go held every row twice
                self.supervisor.beat(self.clock())

    def _check_sandbox(self) -> list[str]:
        """Probe the sandbox once before any worker starts; the layers every worker must then verify.
        Raises SandboxUnavailable (the service does not start) when `sandbox.require` cannot be met."""
        reports = self.jails.probe()
        required = self.jails.required(reports)
        self.sandbox_reports, self.sandbox_required = reports, required  # (for CONFIG_DUMP.md)
        active = [r.name for r in reports if r.active]
        logger.info("sandbox: {} verified; required: {}", ", ".join(active), ", ".join(required) or "none")
        for report in reports:
            if not report.active:
                logger.warning("sandbox layer {} is unavailable: {}", report.name, report.detail)
        return required

    def _log_status(self, now: float) -> None:
        from coordinator.commands import status  # (the command's own picture: one definition of "status")

        try:
            logger.info("{}", self.status_line.line(status.handle(self, {}), now))
        except Exception:  # a status line must never stop the loop
            logger.exception("status line failed")

    def _record_not_files(self) -> None:
        # Taken from the queue (not kept here), so one committed before a crash is recorded after it too.
        for job in self.jobs.take_not_files():
            if job.kind == "rules":
                self.outcomes.bad_rules(job, self.contexts.problems_of(job))
            else:
                self.outcomes.not_a_file(job)

    def _kill_leftovers(self) -> None:
        """Last resort on any exit path: no worker outlives the coordinator."""
        supervisor = getattr(self, "supervisor", None)
        if supervisor is None:
            return
        for slot in supervisor.alive():
            if slot.proc is None:
                continue
            try:
                os.killpg(slot.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                slot.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort while exiting
                pass
            slot.detach()
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.stop()


def excluded_dirs(config: Config, state_dir: Path) -> list[Path]:
    """What the watcher leaves alone: our own state, moved inputs, and every bucket's notes."""
    return [
        state_dir,
        config.processed_dir(),
        config.quarantine_dir(),
        *(config.bucket_output(b) for b in config.buckets),
        # .error sidecars written into a bucket (only where configured so) are ours, never input.
        *([config.notes.sidecar_dir.expanduser()] if config.notes.sidecar_dir is not None else []),
    ]


class _Stopper:
    """The stop sequence: drain in-flight jobs (grace), SHUTDOWN, then SIGTERM/SIGKILL what is left."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.active = False
        self.phase = "running"
        self.deadline = 0.0

    def request(self, now: float, why: str, *, urgent: bool) -> None:
        sup = self.service.supervisor
        if not self.active:
            logger.info(
                "{}: stopping; in-flight jobs get {:g}s", why, self.service.config.service.shutdown_grace_s
            )
            self.active = True
            self.service.watcher.stop()
            sup.begin_stop()
            self.phase, self.deadline = "draining", now + self.service.config.service.shutdown_grace_s
        elif urgent and self.phase in ("draining", "exiting"):
            logger.warning("{} again: stopping workers now", why)
            self.deadline = now

    def step(self, now: float) -> bool:
        """Advance the sequence; True once every worker is gone."""
        sup = self.service.supervisor
        grace = self.service.config.supervisor.kill_grace_s
        if self.phase == "draining" and (not sup.busy() or now >= self.deadline):
            sup.ask_to_exit()
            self.phase, self.deadline = "exiting", now + max(grace, 1.0)
        elif self.phase == "exiting" and sup.alive() and now >= self.deadline:
            sup.force_stop(now)
            self.phase, self.deadline = "killing", now + grace + 5.0
        elif self.phase == "killing" and now >= self.deadline:
            return True  # run()'s finally SIGKILLs and reaps whatever is left
        return self.phase != "draining" and not sup.alive()


_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


def _recv_parts(sock: zmq.Socket[bytes]) -> list[bytes]:
    """One whole message, non-blocking (raises zmq.Again when none is waiting). `recv_multipart` does the
    same with enum arithmetic per part, a measurable cost at one message per job."""
    parts = [sock.recv(_NOBLOCK)]
    while sock.get(zmq.RCVMORE):
        parts.append(sock.recv(_NOBLOCK))
    return parts


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
