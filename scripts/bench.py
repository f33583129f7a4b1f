#!/usr/bin/env python3
"""Benchmarks of the real service: a real coordinator and real workers on real files in temp dirs.

    python scripts/bench.py [--quick] [--json FILE] [--only NAME,...] [--workers N] [--tmpfs] [--keep]

Prints `cores`, the Python version and a markdown table (scenario, figures, bar, pass); with `--json` also
writes one object keyed by scenario name, each holding its figures, `bar` and `pass` (and `ratio` for the
scenarios compared against a peer). Exit 0 when every scenario passed its bar, 1 otherwise.
See docs/benchmarks.md for what each scenario measures and how.

Each scenario starts `python -m coordinator.cli start --config CFG` on a TOML config of its own, watches it
from outside (record files, a read-only look at queue.db, control requests on its socket, psutil), stops it
with SIGTERM and expects exit 0. Nothing survives the script: the coordinator dies with it (parent-death
signal), and on every exit path any process whose command line names the run's base dir is SIGKILLed.

It is one file on purpose (past our usual ~400 lines), like scripts/chaos.py: a tool an operator can copy
next to any install and run. It needs the project importable (for the single-process baseline and the
control protocol), psutil, and pebble for one peer (`pip install '.[bench]'`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import fnmatch
import functools
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from coordinator.include_rules import IncludeRules  # noqa: E402
from coordinator.jobs import Job  # noqa: E402
from coordinator.records import RecordWriter  # noqa: E402
from coordinator.states import JobState  # noqa: E402
from protocol.bucket_include import INCLUDE_NAME  # noqa: E402
from protocol.control import decode_reply, encode_request  # noqa: E402
from worker.pipeline.context import ContextCollector  # noqa: E402
from worker.pipeline.errors import JobError  # noqa: E402
from worker.pipeline.process import process_file  # noqa: E402
from worker.tools.breaker import Breakers  # noqa: E402
from worker.tools.dirgrep import DirectoryGrep  # noqa: E402

BUCKET = "bucket"
MiB = 1024 * 1024
GiB = 1024 * MiB
#: Pre-existing backlogs are old: mtimes a day back, so the watcher's settle window is already over.
OLD_S = 86_400
#: The watcher's default temp-name globs: such names never become jobs, so they are never picked.
TEMP_GLOBS = (".*", "*.tmp", "*.part", "*.crdownload", "~*")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    noop_files: int = 20_000
    real_files: int = 5_000
    drops: int = 200
    kills: int = 20
    slow_files: int = 16
    slow_bytes: int = 2 * GiB
    backlog: int = 100_000
    small_backlog: int = 1_000
    small_runs: int = 5
    scan_files: int = 100_000


FULL = Sizes()
#: Quick shrinks what grows with the run: the backlogs, the drops, the small batches (under 2 minutes).
QUICK = Sizes(drops=50, backlog=20_000, small_runs=3, scan_files=20_000)


class BenchError(Exception):
    """A scenario could not measure what it should (a timeout, a coordinator that died, a wrong outcome)."""


# -- processes --------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec for the coordinator: SIGKILL it if this script dies (its workers follow it the same way)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def processes_naming(marker: str) -> list[psutil.Process]:
    """Live processes (zombies aside) whose command line names `marker`, this one excluded."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_all_naming(marker: str) -> int:
    """SIGKILL (process group first) everything naming `marker`; how many there were."""
    killed = 0
    for _ in range(3):
        left = processes_naming(marker)
        if not left:
            break
        for proc in left:
            killed += 1
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except (OSError, psutil.Error):
                pass
        psutil.wait_procs(left, timeout=5)
    return killed


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class Service:
    """One coordinator on its own config under `home` (bucket, notes, state, log)."""

    def __init__(
        self,
        home: Path,
        *,
        workers: int,
        sections: dict[str, dict[str, Any]],
        bucket: Path | None = None,
        extra_buckets: dict[str, Path] | None = None,
    ) -> None:
        self.home = home
        self.bucket = bucket or home / "bucket"
        self.state = home / "state"
        self.records = self.state / "records"
        self.log = home / "coordinator.log"
        self.config = home / "ob.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        base: dict[str, dict[str, Any]] = {
            "service": {"workers": workers, "state_dir": self.state, "output": home / "notes"},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        lines = []
        for name, values in base.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            lines.append("")
        for name, path in {BUCKET: self.bucket, **(extra_buckets or {})}.items():
            lines += ["[[buckets]]", f"name = {_toml_value(name)}", f"path = {_toml_value(path)}", ""]
        self.config.write_text("\n".join(lines))

    def start(self) -> float:
        """Start the coordinator; the `time.perf_counter()` just before it was spawned."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self.log, "ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "start", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.home),
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no other thread runs here (peer pools are joined)
            )
        return t0

    @property
    def pid(self) -> int:
        """The coordinator's pid (started)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise BenchError if the coordinator has exited."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"coordinator exited by itself (code {code}); see {self.log}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, wait, and insist on exit code 0 (else BenchError, after killing the group)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"coordinator did not exit within {timeout:g}s of SIGTERM") from None
        if code != 0:
            raise BenchError(f"coordinator exit code on SIGTERM was {code}, not 0; see {self.log}")

    def kill(self) -> None:
        """SIGKILL the coordinator's process group, if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)


class Control:
    """A control-socket client kept open between requests (what `ob-ctl` sends, without its start-up cost)."""

    def __init__(self, state: Path) -> None:
        self.path = state / "run" / "control.sock"
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.sock: zmq.Socket[bytes] | None = None

    def ask(self, command: str, timeout_s: float = 2.0) -> Any:
        """The result of one request; raises TimeoutError when nobody answers."""
        if self.sock is None:
            if not self.path.exists():
                raise TimeoutError("no control socket yet")
            self.sock = self.ctx.socket(zmq.REQ)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.connect(f"ipc://{self.path}")
        self.sock.send(encode_request(command))
        if not self.sock.poll(int(timeout_s * 1000)):
            self.sock.close(linger=0)  # a REQ socket that missed its reply cannot send again
            self.sock = None
            raise TimeoutError(f"no answer to {command!r} in {timeout_s:g}s")
        reply = decode_reply(self.sock.recv())
        if not reply["ok"]:
            raise BenchError(f"control request {command!r} failed: {reply.get('error')}")
        return reply["result"]

    def workers(self) -> list[dict[str, Any]]:
        """The `workers` rows: slot, pid, state, current_job, restarts..."""
        return list(self.ask("workers"))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.ctx.term()


class QueueReader:
    """A read-only look at a live coordinator's queue.db (WAL lets it read beside the writer)."""

    def __init__(self, state: Path) -> None:
        self.path = state / "queue.db"
        self.conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self.conn is None and self.path.exists():
            try:
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1)
                self.conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
            except sqlite3.Error:
                self.close()
        return self.conn

    def _one(self, sql: str) -> int | None:
        db = self._db()
        if db is None:
            return None
        try:
            (value,) = db.execute(sql).fetchone()
        except sqlite3.Error:
            return None
        return None if value is None else int(value)

    def max_id(self) -> int:
        """The highest job id: in a fresh queue (ids count up from 1) the number of rows, in O(log n)."""
        return self._one("SELECT MAX(id) FROM jobs") or 0

    def count(self) -> int:
        """Rows in jobs."""
        return self._one("SELECT COUNT(*) FROM jobs") or 0

    def in_flight(self) -> bool:
        """Whether any job is queued or running (an index probe, cheap enough to ask every few ms)."""
        return bool(self._one("SELECT EXISTS(SELECT 1 FROM jobs WHERE state IN ('queued', 'running'))"))

    def all_terminal(self, n: int) -> bool:
        """All `n` jobs exist and none is queued or running."""
        return self.max_id() >= n and not self.in_flight()

    def states(self) -> Counter[str]:
        """Jobs by state."""
        db = self._db()
        return (
            Counter()
            if db is None
            else Counter(dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY 1")))
        )

    def finish_times(self, prefix: str = "") -> list[float]:
        """The `finished_at` of each done job under `prefix` (the coordinator's wall clock when the result
        came in), sorted."""
        db = self._db()
        if db is None:
            return []
        rows = db.execute(
            "SELECT finished_at FROM jobs WHERE state = 'done' AND relpath LIKE ? ORDER BY finished_at",
            (prefix + "%",),
        )
        return [float(t) for (t,) in rows]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float,
    service: Service | None = None,
    each: Callable[[], None] | None = None,
) -> float:
    """Poll until `predicate()`; the `time.perf_counter()` at which it was first seen true."""
    deadline = time.perf_counter() + timeout
    while True:
        if each is not None:
            each()
        if predicate():
            return time.perf_counter()
        if service is not None:
            service.check_alive()
        if time.perf_counter() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_workers_ready(control: Control, workers: int, timeout: float = 60.0) -> None:
    def ready() -> bool:
        try:
            rows = control.workers()
        except TimeoutError:
            return False
        working = [r for r in rows if not r.get("spare")]  # warm spares, if any, are not working slots
        return len(working) == workers and all(r["state"] == "ready" for r in working)

    wait_until(ready, timeout, "every worker ready", interval=0.02)


# -- files ------------------------------------------------------------------------------------------------


def make_tiny_files(root: Path, n: int, per_dir: int = 1_000) -> None:
    """`n` files of a few bytes in subdirectories of `per_dir`, their mtimes a day old (a settled
    backlog). Written with raw os calls: 100,000 files take a few seconds."""
    old_ns = (time.time_ns() // 1_000_000_000 - OLD_S) * 1_000_000_000
    for start in range(0, n, per_dir):
        sub = root / f"d{start // per_dir:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(n, start + per_dir)):
            fd = os.open(sub / f"f{i:06d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"tiny file %d\n" % i)
                os.utime(fd, ns=(old_ns, old_ns))
            finally:
                os.close(fd)


def list_files(root: Path) -> list[str]:
    """Every file under `root` (what a peer is handed), sorted."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def _skipped(parts: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(part, glob) for part in parts for glob in TEMP_GLOBS)


def select_stdlib(n: int, *, seed: int = 1, max_bytes: int = MiB) -> list[tuple[Path, str]]:
    """`n` regular files of the running Python's standard library (no symlinks, none over `max_bytes`, no
    site-packages), as (path, relative posix path); deterministic. Each pick draws an extension weighted by
    the square root of its file count, so the mix holds .py, .pyc, .txt, .json, .so, test data... rather
    than mostly .pyc."""
    source = Path(sysconfig.get_paths()["stdlib"])
    by_ext: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(source):
        rel_dir = Path(dirpath).relative_to(source)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "dist-packages")
            and not _skipped([d])
            and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            if _skipped(Path(rel).parts):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if (
                path.is_symlink()
                or not path.is_file()
                or st.st_size > max_bytes
                or not os.access(path, os.R_OK)
            ):
                continue
            by_ext[path.suffix.lower() or name].append((path, rel))
    rng = random.Random(seed)
    groups = []
    for ext in sorted(by_ext, key=lambda e: (-len(by_ext[e]), e)):
        rng.shuffle(by_ext[ext])
        groups.append((by_ext[ext], len(by_ext[ext]) ** 0.5))
    picked: list[tuple[Path, str]] = []
    while len(picked) < n:
        left = [(files, weight) for files, weight in groups if files]
        if not left:
            raise BenchError(f"only {len(picked)} usable files under {source}; {n} needed")
        ((files, _),) = rng.choices(left, weights=[weight for _, weight in left])
        picked.append(files.pop())
    return picked


# -- the peers and the single-process baseline --------------------------------------------------------------


def _noop(path: str) -> None:
    """What every peer pool runs on each path: nothing (the dispatch path alone is measured)."""
    return None


def peer_process_pool_executor(root: Path, workers: int) -> float:
    """files/s of `concurrent.futures.ProcessPoolExecutor.submit`, start-up to the last result."""
    t0 = time.perf_counter()
    paths = list_files(root)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_noop, p) for p in paths]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - t0
    return len(paths) / elapsed


def peer_multiprocessing_pool(root: Path, workers: int) -> float:
    """files/s of `multiprocessing.Pool.apply_async`, start-up to the last result."""
    t0 = time.perf_counter()
    paths = list_files(root)
    pool = multiprocessing.Pool(workers)
    try:
        results = [pool.apply_async(_noop, (p,)) for p in paths]
        for result in results:
            result.get()
        elapsed = time.perf_counter() - t0
    except BaseException:
        pool.terminate()
        raise
    pool.close()  # close and join rather than the context manager's terminate: the workers exit by
    pool.join()  # themselves instead of being SIGTERMed mid-way through a queue read
    return len(paths) / elapsed


def peer_pebble(root: Path, workers: int) -> float | None:
    """files/s of `pebble.ProcessPool.schedule`, start-up to the last result; None without pebble."""
    try:
        import pebble
    except ImportError:
        return None
    t0 = time.perf_counter()
    paths = list_files(root)
    pool = pebble.ProcessPool(max_workers=workers)
    try:
        futures = [pool.schedule(_noop, args=(p,)) for p in paths]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - t0
    except BaseException:
        pool.stop()
        pool.join()
        raise
    pool.close()
    pool.join()
    return len(paths) / elapsed


def single_process(
    bucket: Path, notes: Path, records: Path, *, context: bool = False
) -> tuple[float, Counter[str]]:
    """The plain loop `real_files` is compared with: walk the bucket, and for each file run the worker's
    pipeline (read, detect, hash, render, write the note atomically) and write its record with the
    coordinator's own `RecordWriter`. files/s and outcome counts. With `context`, each file also gets its
    `.bucket-include` rules looked up (as the coordinator does at dispatch) and its context collected
    through one cache (as a worker does), so both sides do the same work."""
    writer = RecordWriter(records)
    include = IncludeRules(str(bucket / ".no-global-profile")) if context else None
    collector = ContextCollector(DirectoryGrep(Breakers())) if context else None
    outcomes: Counter[str] = Counter()
    t0 = time.perf_counter()
    seq = 0
    for dirpath, dirnames, filenames in os.walk(bucket):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(INCLUDE_NAME):
                continue  # configuration, never input (the service skips them too)
            seq += 1
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, bucket)
            st = os.lstat(path)  # the service's scan stats every file too: its version key
            output = notes / f"{rel}.obs.md"
            job = Job(seq, (BUCKET, rel, st.st_size, st.st_mtime_ns, st.st_ino), path, rel, str(output))
            job.worker, job.attempts = "bench", 1
            started = time.monotonic()
            try:
                facts = process_file(
                    path,
                    str(output),
                    bucket=BUCKET,
                    relpath=rel,
                    worker="bench",
                    max_input_bytes=256 * MiB,
                    preview_lines=0,  # the service's default: the text up to notes.content_max_bytes
                    context=include.load(str(bucket), rel).wire if include is not None else None,
                    collector=collector,
                )
            except JobError as exc:
                outcomes["failed"] += 1
                writer.error(job, state=JobState.FAILED, category=exc.category, message=str(exc))
                continue
            outcomes["done"] += 1
            result = {"output_path": str(output), "facts": facts.model_dump()}
            writer.success(job, result=result, duration_s=time.monotonic() - started)
    rate = seq / (time.perf_counter() - t0)
    writer.close()
    return rate, outcomes


# -- the scenarios ------------------------------------------------------------------------------------------


class Bench:
    """What every scenario needs: sizes, worker count, the run's base dir, and the services to clean up."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.workers: int = args.workers
        parent = Path("/dev/shm" if args.tmpfs else "/tmp")
        self.base = Path(tempfile.mkdtemp(prefix="obb-", dir=parent)).absolute()
        self.services: list[Service] = []
        self._tiny: set[Path] = set()

    def home(self, name: str) -> Path:
        """A fresh directory for one scenario's service (short: unix socket paths live under it)."""
        path = self.base / name
        path.mkdir()
        return path

    def service(
        self,
        home: Path,
        bucket: Path | None = None,
        extra_buckets: dict[str, Path] | None = None,
        **sections: dict[str, Any],
    ) -> Service:
        """A service for a scenario, on `home/bucket` unless another bucket is given."""
        for path in [bucket or home / "bucket", *(extra_buckets or {}).values()]:
            path.mkdir(exist_ok=True)
        svc = Service(
            home, workers=self.workers, sections=sections, bucket=bucket, extra_buckets=extra_buckets
        )
        self.services.append(svc)
        return svc

    def tiny_bucket(self, n: int) -> Path:
        """A bucket of `n` tiny old files, written once and shared by every no-op scenario of that size:
        the no-op pipeline never touches an input and inputs are kept after success, so the tree is the
        same for each run (creating a file costs ~0.2 ms on this kind of disk; 100,000 take ~20 s)."""
        bucket = self.base / f"tiny-{n}"
        if bucket not in self._tiny:
            make_tiny_files(bucket, n)
            self._tiny.add(bucket)
        return bucket

    def end_scenario(self) -> None:
        """No coordinator or worker of this scenario survives it."""
        for svc in self.services:
            svc.kill()
        self.services.clear()
        kill_all_naming(str(self.base))

    def cleanup(self) -> None:
        """Last step on every exit path: nothing left running, the temp dirs gone (unless --keep)."""
        self.end_scenario()
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Run:
    """One service run over a backlog, start to every job terminal."""

    seconds: float  # from spawning the coordinator until every job was seen terminal in queue.db
    states: Counter[str]
    times: list[float]  # done jobs' finish times, sorted
    peak_rss_mb: float  # the coordinator's alone, sampled every 50 ms (0 unless asked for)
    coordinator_cpu_s: float  # CPU time (user + system) until then
    workers_cpu_s: float  # of every worker it started, live or reaped


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of a process, and of all its descendants (reaped children included)."""
    proc = psutil.Process(pid)
    own = proc.cpu_times()
    kids = own.children_user + own.children_system
    for child in proc.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        kids += times.user + times.system
    return own.user + own.system, kids


def run_to_completion(
    b: Bench,
    svc: Service,
    n: int,
    *,
    timeout: float,
    interval: float = 0.01,
    rss: bool = False,
    stop: bool = True,
) -> Run:
    """Start `svc`, wait until its `n` jobs are all terminal, stop it (exit 0) unless `stop` is false."""
    reader = QueueReader(svc.state)
    peak = 0
    next_sample = 0.0
    proc: psutil.Process | None = None

    def sample() -> None:
        nonlocal peak, next_sample, proc
        if not rss or time.perf_counter() < next_sample:
            return
        next_sample = time.perf_counter() + 0.05
        try:
            proc = proc or psutil.Process(svc.pid)
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            pass

    try:
        t0 = svc.start()
        done = functools.partial(reader.all_terminal, n)
        t1 = wait_until(done, timeout, f"{n} jobs to finish", interval=interval, service=svc, each=sample)
        coordinator_cpu, workers_cpu = cpu_seconds(svc.pid)
        states = reader.states()
        times = reader.finish_times()
    finally:
        reader.close()
    if stop:
        svc.stop()
    if sum(states.values()) != n:
        raise BenchError(f"{sum(states.values())} jobs in queue.db, not {n}")
    return Run(t1 - t0, states, times, peak / MiB, coordinator_cpu, workers_cpu)


def cpu_figures(run: Run, n: int) -> dict[str, float]:
    """Where the CPU went, per file: a hint for whoever optimizes (not part of any bar)."""
    return {
        "coordinator_cpu_ms_per_file": round(run.coordinator_cpu_s * 1000 / n, 3),
        "workers_cpu_ms_per_file": round(run.workers_cpu_s * 1000 / n, 3),
    }


def file_create_ms(directory: Path, n: int = 300) -> float:
    """Median ms to create (write, close) one small file in `directory`, which is left in place: the
    state of the disk at that moment, for reading the figures beside it. On a filesystem without a journal,
    ext4 will not reuse an inode freed in the last few minutes and searches past them one by one, so after
    a big deletion (a test run, the previous benchmark's clean-up) this goes from ~0.03 to ~0.5 ms."""
    directory.mkdir(parents=True, exist_ok=True)
    times = []
    for i in range(n):
        t = time.perf_counter()
        fd = os.open(directory / f"probe-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"{}")
        os.close(fd)
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 3)


def scenario_noop_dispatch(b: Bench) -> dict[str, Any]:
    """files/s of the whole durable path (scan, queue, dispatch, records) with workers that only
    acknowledge, from the coordinator's spawn until queue.db shows every job done; then three process
    pools running a no-op on the same paths with as many workers, start-up included."""
    n = b.sizes.noop_files
    home = b.home("noop")
    svc = b.service(home, b.tiny_bucket(n), jobs={"pipeline": "noop"})
    disk = file_create_ms(home / "disk-probe")
    run = run_to_completion(b, svc, n, timeout=300)
    if run.states["done"] != n:
        raise BenchError(f"no-op jobs did not all succeed: {dict(run.states)}")
    ours = n / run.seconds
    ppe = peer_process_pool_executor(svc.bucket, b.workers)
    mpp = peer_multiprocessing_pool(svc.bucket, b.workers)
    peb = peer_pebble(svc.bucket, b.workers)
    return {
        "files": n,
        "files_per_s": round(ours),
        "process_pool_executor_files_per_s": round(ppe),
        "multiprocessing_pool_files_per_s": round(mpp),
        "pebble_files_per_s": None if peb is None else round(peb),
        "ratio": round(ours / ppe, 3),
        **cpu_figures(run, n),
        "disk_create_ms": disk,
    }


#: The `.bucket-include` of `real_files_context`, in the Node prototype's documented shape.
CONTEXT_RULES = """\
**/*.py
!**/test_*.py
[dirs:./configs]
TODO|FIXME|HACK
[dirs:./templates]
TODO|FIXME|HACK
"""


def scenario_real_files(b: Bench, *, context: bool = False) -> dict[str, Any]:
    """files/s over a backlog of real files from the standard library with the default pipeline, against
    a plain loop in this process doing the same pipeline and record writes one file after another. With
    `context`, the bucket has a `.bucket-include` (includes, excludes, two `[dirs:...]` sections over
    directories of library files) and every note gets Related Context and Grep Results."""
    n = b.sizes.real_files
    home = b.home("real-context" if context else "real")
    svc = b.service(home)
    picked = select_stdlib(n)
    if context:
        (svc.bucket / INCLUDE_NAME).write_text(CONTEXT_RULES)
        # The grepped directories are a part of the backlog: files the service processes too.
        picked = [(src, f"{'configs' if i % 2 else 'templates'}/{rel}" if i % 25 == 0 else rel)
                  for i, (src, rel) in enumerate(picked)]  # fmt: skip
    for src, rel in picked:
        dst = svc.bucket / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)  # keeps the library's old mtime: a settled backlog
    disk = file_create_ms(home / "disk-probe")
    run = run_to_completion(b, svc, n, timeout=600, interval=0.02)
    states, ours = run.states, n / run.seconds
    single, outcomes = single_process(
        svc.bucket, home / "single-notes", home / "single-records", context=context
    )
    if outcomes["done"] != states["done"]:
        raise BenchError(f"outcomes differ: service {dict(states)}, single process {dict(outcomes)}")
    kinds = Counter(Path(rel).suffix.lower() or "(none)" for _, rel in picked)
    return {
        "files": n,
        "bytes_mb": round(sum(src.stat().st_size for src, _ in picked) / MiB, 1),
        "mix": ", ".join(f"{ext} {count}" for ext, count in kinds.most_common(6)),
        "failed": states["failed"],
        "files_per_s": round(ours),
        "single_process_files_per_s": round(single),
        "ratio": round(ours / single, 3),
        **cpu_figures(run, n),
        "disk_create_ms": disk,
    }


def scenario_drop_latency(b: Bench) -> dict[str, Any]:
    """ms from renaming one file into the bucket of an idle service until its record file appears, one
    drop at a time."""
    sz = b.sizes
    home = b.home("drop")
    staging = home / "staging"
    staging.mkdir()
    svc = b.service(home)
    samples = [
        (src.read_bytes(), src.suffix or ".bin") for src, _ in select_stdlib(200, seed=2, max_bytes=64 * 1024)
    ]
    control = Control(svc.state)
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    try:
        svc.start()
        wait_workers_ready(control, b.workers)
        seen = set(os.listdir(svc.records))
        # One warm-up drop per worker, not counted: a worker's first job pays its first-use costs.
        for i in range(b.workers + sz.drops):
            data, ext = samples[i % len(samples)]
            name = f"drop-{i:05d}{ext}"
            (staging / name).write_bytes(data)
            t0 = time.perf_counter()
            os.rename(staging / name, svc.bucket / name)
            while not (new := [x for x in os.listdir(svc.records) if x not in seen and x[0] != "."]):
                if time.perf_counter() - t0 > 30:
                    svc.check_alive()
                    raise BenchError(f"no record for {name} within 30s")
                time.sleep(0.001)
            t1 = time.perf_counter()
            seen.update(new)
            if i >= b.workers:
                latencies.append((t1 - t0) * 1000)
                kinds.update(x.split("-", 1)[0] for x in new)
            time.sleep(0.02)
    finally:
        control.close()
    svc.stop()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "n": len(latencies),
        "warmup_excluded": b.workers,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(q[98], 2),
        "max_ms": round(max(latencies), 2),
        "records": dict(kinds),
    }


def scenario_crash_recovery(b: Bench) -> dict[str, Any]:
    """ms from SIGKILLing a busy worker until its slot has a new process ready or busy, and until the job
    it held is busy again, as `ob-ctl workers` shows it."""
    sz = b.sizes
    home = b.home("crash")
    svc = b.service(
        home,
        service={"shutdown_grace_s": 1.0},
        # retry_backoff_initial_s = 0: the retry's wait is policy (0.5 s doubling per attempt, and the
        # same slow files are killed again and again here), not how fast recovery is; see docs/supervision.md.
        jobs={"max_input_bytes": 2 * sz.slow_bytes, "retry_backoff_initial_s": 0.0},
        # stable_uptime_s = 0: every kill is charged as a first crash (the backoff delay does not grow
        # from one kill to the next); see docs/benchmarks.md.
        supervisor={"max_restarts": 1000, "quarantine_after": 100, "stable_uptime_s": 0.0},
        # Breakers and the fleet guard off: this scenario SIGKILLs busy workers 20 times on purpose, which
        # they would rightly take for a broken slot (or a restart storm) and stop feeding it for
        # `recovery_s` (or `probe_interval_s`); here we measure how fast a slot is refilled, not that policy.
        breaker={"failure_threshold": 0, "failure_rate": 1.0},
        fleet={"open_fraction": 0.0, "max_restarts": 0},
    )
    old = time.time() - OLD_S
    for i in range(sz.slow_files):
        path = svc.bucket / f"slow-{i:03d}.bin"
        with open(path, "wb") as fh:
            fh.truncate(sz.slow_bytes)  # sparse: no disk, but hashing reads every byte
        os.utime(path, (old, old))
    control = Control(svc.state)
    restart_ms: list[float] = []
    retry_ms: list[float] = []
    slots_killed: list[int] = []
    try:
        svc.start()
        busy: list[dict[str, Any]] = []

        def full_strength_and_busy() -> bool:
            """Every process the coordinator keeps (spares too, if it has any) is up, and one works."""
            try:
                rows = control.workers()
            except TimeoutError:
                return False
            busy[:] = [r for r in rows if r["state"] == "busy" and r.get("current_job") and r.get("pid")]
            return bool(busy) and all(r["state"] in ("ready", "busy") for r in rows)

        for k in range(sz.kills):
            # Each kill starts from a service at full strength: this measures recovery from one crash; a
            # burst of kills faster than restarts is another question (restart intensity, backoff).
            wait_until(full_strength_and_busy, 60, "a busy worker", interval=0.005, service=svc)
            # Spread the kills over the slots: the least restarted busy one, taking turns on a tie.
            victim = min(busy, key=lambda r: (r.get("restarts", 0), (r["slot"] - k) % b.workers))
            slot, pid, job = victim["slot"], victim["pid"], victim["current_job"]
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            restarted: float | None = None
            retried: float | None = None
            deadline = t0 + 60
            while restarted is None or retried is None:
                try:
                    now_rows = control.workers()
                except TimeoutError:
                    now_rows = []
                now = time.perf_counter()
                for r in now_rows:
                    back = r["state"] in ("ready", "busy") and r.get("pid") not in (None, pid)
                    if back and r["slot"] == slot and not r.get("spare"):
                        restarted = restarted or now
                    if back and r["state"] == "busy" and r.get("current_job") == job:
                        retried = retried or now
                if now > deadline:
                    raise BenchError(f"kill {k + 1}: slot {slot} or job {job} not back within 60s")
                svc.check_alive()
                time.sleep(0.003)
            restart_ms.append((restarted - t0) * 1000)
            retry_ms.append((retried - t0) * 1000)
            slots_killed.append(slot)
        reader = QueueReader(svc.state)
        states = reader.states()
        reader.close()
    finally:
        control.close()
    svc.stop()
    if states["quarantined"] or states["failed"]:
        raise BenchError(f"kills failed or quarantined jobs: {dict(states)}")
    return {
        "kills": len(restart_ms),
        "median_ms": round(statistics.median(restart_ms), 1),
        "max_ms": round(max(restart_ms), 1),
        "retry_median_ms": round(statistics.median(retry_ms), 1),
        "slots_killed": dict(Counter(slots_killed)),
    }


def _window_rates(times: list[float], lo: int, hi: int, width: int) -> list[float]:
    """files/s over consecutive windows of `width` completions between completion `lo` and `hi`."""
    return [
        width / (times[i + width] - times[i])
        for i in range(lo, hi - width + 1, width)
        if times[i + width] > times[i]
    ]


def scenario_backlog_memory(b: Bench) -> dict[str, Any]:
    """Peak coordinator RSS over a large no-op backlog, and its throughput while that backlog is large
    against its throughput with a 1,000-file backlog (same coordinator, once the large one is done)."""
    sz = b.sizes
    n, small = sz.backlog, sz.small_backlog
    home = b.home("backlog")
    svc = b.service(home, b.tiny_bucket(n), {"small": home / "small"}, jobs={"pipeline": "noop"})
    # The small backlogs, staged beside the bucket before the clock starts: hard links to one shared set
    # of 1,000 tiny files (each batch a directory of its own, so each file is a new job).
    source = b.tiny_bucket(small)
    for r in range(sz.small_runs):
        for dirpath, _, files in os.walk(source):
            target = home / "staging" / f"batch{r}" / os.path.relpath(dirpath, source)
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                os.link(os.path.join(dirpath, name), target / name)
    width = small // 2
    lo = (small - width) // 2
    rates = []
    try:
        run = run_to_completion(b, svc, n, timeout=900, interval=0.05, rss=True, stop=False)
        if len(run.times) != n:
            raise BenchError(f"backlog run: {dict(run.states)}")
        reader = QueueReader(svc.state)
        try:
            for r in range(sz.small_runs):
                os.rename(home / "staging" / f"batch{r}", home / "small" / f"batch{r}")
                done = functools.partial(reader.all_terminal, n + small * (r + 1))
                wait_until(done, 120, f"small batch {r} to finish", interval=0.01, service=svc)
                times = reader.finish_times(f"batch{r}/")
                if len(times) != small:
                    raise BenchError(f"small batch {r}: {len(times)} of {small} jobs done")
                rates.append(width / (times[lo + width] - times[lo]))
        finally:
            reader.close()
    finally:
        svc.stop()
    # Windows of the same width over the big run's completions 20% to 40%; the median of each side.
    big = statistics.median(_window_rates(run.times, n // 5, 2 * n // 5, width))
    ref = statistics.median(rates)
    return {
        "backlog": n,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "files_per_s_overall": round(n / run.seconds),
        "files_per_s_20_40pct": round(big),
        "files_per_s_1k_backlog": round(ref),
        "throughput_fraction": round(big / ref, 3),
    }


def scenario_scan_rate(b: Bench) -> dict[str, Any]:
    """files/s from the coordinator's spawn until every pre-existing (settled) file has a row in jobs."""
    n = b.sizes.scan_files
    home = b.home("scan")
    svc = b.service(home, b.tiny_bucket(n), jobs={"pipeline": "noop"})
    reader = QueueReader(svc.state)
    try:
        t0 = svc.start()
        t1 = wait_until(lambda: reader.max_id() >= n, 300, f"{n} jobs queued", interval=0.01, service=svc)
        rows = reader.count()
    finally:
        reader.close()
    svc.stop()
    if rows != n:
        raise BenchError(f"{rows} rows in jobs, not {n}")
    return {"files": n, "seconds": round(t1 - t0, 3), "files_per_s": round(n / (t1 - t0))}


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Bench], dict[str, Any]]
    bar: str
    passes: Callable[[dict[str, Any]], bool]


SCENARIOS: dict[str, Scenario] = {
    "noop_dispatch": Scenario(scenario_noop_dispatch, "ratio >= 0.5", lambda f: f["ratio"] >= 0.5),
    "real_files": Scenario(scenario_real_files, "ratio >= 1.2", lambda f: f["ratio"] >= 1.2),
    "real_files_context": Scenario(
        functools.partial(scenario_real_files, context=True), "ratio >= 1.2", lambda f: f["ratio"] >= 1.2
    ),
    "drop_latency": Scenario(
        scenario_drop_latency,
        "p50 <= 20 ms, p99 <= 100 ms",
        lambda f: f["p50_ms"] <= 20 and f["p99_ms"] <= 100,
    ),
    "crash_recovery": Scenario(scenario_crash_recovery, "median <= 300 ms", lambda f: f["median_ms"] <= 300),
    "backlog_memory": Scenario(
        scenario_backlog_memory,
        "peak RSS <= 150 MB, fraction >= 0.9",
        lambda f: f["peak_rss_mb"] <= 150 and f["throughput_fraction"] >= 0.9,
    ),
    "scan_rate": Scenario(scenario_scan_rate, "files/s >= 50,000", lambda f: f["files_per_s"] >= 50_000),
}


# -- running and reporting --------------------------------------------------------------------------------


def _figure(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if not math.isnan(value) else "nan"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_figure(v)}" for k, v in value.items()) + "}"
    return str(value)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| scenario | figures | bar | pass |", "| --- | --- | --- | --- |"]
    for name, result in results.items():
        figures = "; ".join(f"{k}: {_figure(v)}" for k, v in result.items() if k not in ("bar", "pass"))
        verdict = "yes" if result["pass"] else "NO"
        lines.append(f"| {name} | {figures.replace('|', '/')} | {result['bar']} | {verdict} |")
    return "\n".join(lines)


def _load() -> str:
    """The load averages: other work on the machine moves every figure (the bars assume an idle box)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios one after another, print the table, write the JSON; the exit code."""
    names = list(SCENARIOS) if not args.only else [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = [x for x in names if x not in SCENARIOS]
    if unknown:
        print(
            f"bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr
        )
        return 2
    bench = Bench(args)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cores: {cores}, load average: {_load()}")
    print(f"python: {platform.python_version()} ({sys.executable})")
    print(
        f"mode: {'quick' if args.quick else 'full'}, workers: {bench.workers}, base: {bench.base}", flush=True
    )
    try:
        for name in names:
            scenario = SCENARIOS[name]
            t0 = time.perf_counter()
            try:
                figures = scenario.run(bench)
                ok = scenario.passes(figures)
            except BenchError as exc:
                figures, ok = {"error": str(exc)}, False
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others
                traceback.print_exc()
                figures, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
            finally:
                bench.end_scenario()
            results[name] = {**figures, "bar": scenario.bar, "pass": ok}
            print(
                f"  {name}: {time.perf_counter() - t0:.1f}s, {'pass' if ok else 'FAIL'} (load {_load()})",
                file=sys.stderr,
                flush=True,
            )
    finally:
        bench.cleanup()
    print()
    print(markdown_table(results))
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["pass"] for r in results.values()) else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="bench.py", description="Benchmark the real Open Buckets service.")
    p.add_argument("--quick", action="store_true", help="smaller backlogs and fewer drops (under 2 minutes)")
    p.add_argument("--json", metavar="FILE", help="also write the results as one JSON object")
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes everywhere (default 2; bars are for 2)"
    )
    p.add_argument("--tmpfs", action="store_true", help="put the temp dirs on /dev/shm instead of /tmp")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs (configs, logs, state) afterwards")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: SIGTERM behaves like Ctrl-C, so the clean-up runs on it too."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("bench: --workers must be >= 1", file=sys.stderr)
        return 2

    me = os.getpid()

    def on_term(signum: int, _frame: object) -> None:
        if os.getpid() != me:  # a forked peer-pool worker inherited this handler: just die
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
