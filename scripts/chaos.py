#!/usr/bin/env python3
"""Chaos run: drop real files into a bucket while SIGKILLing workers and the coordinator, then check that
every file version ended in exactly one terminal record, and that its note matches a calm run's.

    python scripts/chaos.py [--files N] [--workers W] [--worker-kill-ms T] [--coordinator-kills K]
                            [--seed S] [--source DIR] [--duration S] [--base DIR] [--keep] [--json FILE]

Exit 0 with a summary line ending in "OK", or 1 with "FAIL" and one line per problem. See docs/chaos.md.

Only the standard library and psutil: the script drives the service from outside, through its CLIs, its
record files and a read-only look at queue.db, the way an operator would. It is one file on purpose (past
our usual ~400 lines): a tool an operator can copy next to any install and run.
"""

from __future__ import annotations

import argparse
import ctypes
import fnmatch
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
BUCKET_NAME = "bucket"
MAX_SOURCE_BYTES = 1024 * 1024
#: The watcher's default temp-name globs (config `watcher.temp_ignore`): such files are never jobs.
TEMP_GLOBS = (".*", "*.tmp", "*.part", "*.crdownload", "~*")
#: Front-matter lines that legitimately differ between two runs over the same file.
VOLATILE_KEYS = ("processed_at:", "worker:", "job:")
WORKERS_GONE_S = 10.0

Version = tuple[int, int, int]  # size, mtime_ns, inode
VersionKey = tuple[str, int, int, int]  # relpath, size, mtime_ns, inode


def vkey(relpath: str, version: Version) -> VersionKey:
    return (relpath, version[0], version[1], version[2])


# -- picking and dropping files ---------------------------------------------------------------------------


def _skipped(rel_parts: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(part, glob) for part in rel_parts for glob in TEMP_GLOBS)


def select_files(source: Path, n: int, seed: int) -> list[tuple[Path, str]]:
    """`n` regular files under `source` (no symlinks, none over 1 MB, no site-packages), as (path, relative
    posix path). Deterministic for a given tree and seed. Each pick draws an extension with a weight of the
    square root of how many files have it, so the pick is a mix of .py, .pyc, .txt, .json, .so, test data...
    rather than mostly .pyc."""
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
            if not path.is_file() or path.is_symlink() or st.st_size > MAX_SOURCE_BYTES:
                continue
            if not os.access(path, os.R_OK):
                continue
            by_ext[path.suffix.lower() or name].append((path, rel))
    rng = random.Random(seed)
    groups = []
    for ext in sorted(by_ext, key=lambda e: (-len(by_ext[e]), e)):
        files = by_ext[ext]
        rng.shuffle(files)
        groups.append((files, len(files) ** 0.5))
    picked: list[tuple[Path, str]] = []
    while len(picked) < n:
        left = [(files, weight) for files, weight in groups if files]
        if not left:
            break
        ((files, _),) = rng.choices(left, weights=[weight for _, weight in left])
        picked.append(files.pop())
    return picked


def _merge_by_rename(src: Path, dst: Path) -> None:
    """Move `src` (staged outside the bucket) to `dst` with renames only: a directory the bucket lacks moves
    in whole, one it has is merged into name by name."""
    if not os.path.lexists(dst):
        os.rename(src, dst)
        return
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in sorted(src.iterdir()):
            _merge_by_rename(child, dst / child.name)
        src.rmdir()
        return
    raise RuntimeError(f"{dst} already exists in the bucket")


# -- processes --------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec for the coordinator: SIGKILL it if this script dies (its workers follow by their own
    parent-death signal), so not even a SIGKILLed chaos run leaves a service behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def processes_naming(marker: str) -> list[psutil.Process]:
    """Live processes (zombies aside) whose command line names `marker`, this one excluded."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _kill_hard(proc: psutil.Process) -> None:
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (OSError, psutil.Error):
        pass


class Coordinator:
    """One coordinator process after another on the same config; logs go to <base>/coordinator.<n>.log."""

    def __init__(self, base: Path, config: Path, state: Path, tag: str) -> None:
        self.base = base
        self.config = config
        self.state = state
        self.tag = tag
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.logs: list[Path] = []

    def start(self) -> None:
        log_path = self.base / f"{self.tag}.{self.starts}.log"
        self.logs.append(log_path)
        self.starts += 1
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator.cli", "start", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.base),
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - this script is single-threaded
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def workers(self) -> list[psutil.Process]:
        """The coordinator's live worker children (`python -m worker ...`; not its start-up sandbox probe,
        which is no worker: killing it is a failed start, not chaos)."""
        if not self.alive():
            return []
        try:
            children = psutil.Process(self.proc.pid).children()  # type: ignore[union-attr]
        except psutil.Error:
            return []
        out = []
        for child in children:
            try:
                cmdline = child.cmdline()
                if (
                    "-m worker" in " ".join(cmdline)
                    and "--probe" not in cmdline
                    and child.status() != psutil.STATUS_ZOMBIE
                ):
                    out.append(child)
            except psutil.Error:
                continue
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM and wait; the exit code, or None if it did not exit in time (then it is SIGKILLed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return None

    def kill_group(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def status(self) -> dict[str, Any] | None:
        """`ob-ctl status --json`, or None when nobody answers."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "coordinator.ctl", "--state-dir", str(self.state), "status", "--json"],
                capture_output=True,
                text=True,
                timeout=15,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return None
        if done.returncode != 0:
            return None
        try:
            return dict(json.loads(done.stdout))
        except ValueError:
            return None


# -- records, notes and the queue -------------------------------------------------------------------------


@dataclass
class RecordFile:
    name: str
    kind: str  # SUCCESS | ERROR
    state: str  # done | failed | quarantined
    key: VersionKey | None
    job_id: Any
    category: str | None
    message: str | None
    sha256: str | None


class RecordReader:
    """Reads a records directory incrementally: record files are never rewritten, so each is parsed once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.records: dict[str, RecordFile] = {}
        self.unreadable: dict[str, str] = {}
        self.temp_files = 0

    def refresh(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        self.temp_files = sum(1 for n in names if n.startswith("."))
        for name in names:
            if name.startswith(".") or name in self.records:
                continue
            path = self.directory / name
            if not (name.startswith(("SUCCESS-", "ERROR-")) and name.endswith(".json")):
                self.unreadable[name] = "not a record file name"
                continue
            try:
                data = json.loads(path.read_text())
                version = data["context"]["version"]
                key = (data["relativePath"], version["size"], version["mtimeNs"], version["inode"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.unreadable[name] = f"{type(exc).__name__}: {exc}"
                continue
            self.unreadable.pop(name, None)
            kind = "SUCCESS" if name.startswith("SUCCESS") else "ERROR"
            self.records[name] = RecordFile(
                name=name,
                kind=kind,
                state=str(data.get("state") or ("done" if kind == "SUCCESS" else "failed")),
                key=key,
                job_id=data.get("jobId"),
                category=data.get("category"),
                message=(data.get("error") or {}).get("message"),
                sha256=(data.get("metadata") or {}).get("sha256"),
            )

    def by_key(self) -> dict[VersionKey, list[RecordFile]]:
        out: dict[VersionKey, list[RecordFile]] = defaultdict(list)
        for rec in self.records.values():
            if rec.key is not None:
                out[rec.key].append(rec)
        return out


def read_queue(db_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every job row and every records-index row of a (stopped) coordinator's queue.db, read-only."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        jobs = [dict(r) for r in conn.execute("SELECT * FROM jobs")]
        records = [dict(r) for r in conn.execute("SELECT * FROM records")]
    finally:
        conn.close()
    return jobs, records


def jobs_running(db_path: Path) -> int:
    """How many jobs a live coordinator has committed as `running` (0 when the database is not readable)."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2)
        try:
            (n,) = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'running'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(n)


def recovery_reports(logs: Iterable[Path]) -> Counter[str]:
    """The sums of what start-up recovery did (its log line), over the given coordinator logs."""
    total: Counter[str] = Counter()
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        for match in re.finditer(r"recovery after an unclean stop: RecoveryReport\(([^)]*)\)", text):
            for field_, value in re.findall(r"(\w+)=(\d+)", match.group(1)):
                total[field_] += int(value)
    return total


def strip_volatile(note: str) -> str:
    """The note without the front-matter lines that differ between runs (processed_at, worker, job)."""
    lines = note.split("\n")
    if not lines or lines[0] != "---":
        return note
    try:
        end = lines.index("---", 1)
    except ValueError:
        return note
    front = [line for line in lines[1:end] if not line.startswith(VOLATILE_KEYS)]
    return "\n".join(["---", *front, *lines[end:]])


def front_matter_value(note: str, key: str) -> str | None:
    for line in note.split("\n")[1:]:
        if line == "---":
            return None
        if line.startswith(f"{key}: "):
            try:
                return str(json.loads(line[len(key) + 2 :]))
            except ValueError:
                return line[len(key) + 2 :]
    return None


# -- the run ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run (chaos or calm) ended with, per dropped file version."""

    states: dict[str, str] = field(default_factory=dict)  # relpath -> done | failed | quarantined
    records: dict[str, RecordFile] = field(default_factory=dict)  # relpath -> its one record
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)


def write_config(path: Path, *, workers: int, bucket: Path, notes: Path, state: Path) -> Path:
    path.write_text(
        f"""
[service]
workers = {workers}
state_dir = "{state}"
output = "{notes}"
log_level = "DEBUG"
shutdown_grace_s = 5.0

[watcher]
settle_s = 0.3
rescan_interval_s = 5.0

[supervisor]
heartbeat_interval_s = 0.5
liveness = 3
backoff_initial_s = 0.2
backoff_max_s = 2.0
kill_grace_s = 1.0
max_restarts = 1000

[[buckets]]
name = "{BUCKET_NAME}"
path = "{bucket}"
"""
    )
    return path


class Abort(Exception):
    """The run cannot go on; what was found so far is reported as a failure."""


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.problems: list[str] = []
        self.notes_: list[str] = []  # remarks that are not failures
        self.worker_kills = 0
        self.coordinator_kills = 0
        self.kills_in_flight = 0
        self.unexpected_exits = 0
        self.started = time.monotonic()
        parent = Path(args.base) if args.base else Path("/tmp")
        parent.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix="chaos-", dir=parent)).absolute()
        self.bucket = self.base / "bucket"
        self.staging = self.base / "staging"
        self.notes = self.base / "notes"
        self.state = self.base / "state"
        for d in (self.bucket, self.staging):
            d.mkdir()
        self.dropped: dict[str, Version] = {}  # relpath -> version in the bucket
        self.batches: list[list[tuple[Path, str]]] = []
        self.batch_times: list[float] = []
        self.coordinators: list[Coordinator] = []
        self.chaos_outcome = Outcome()
        self.calm_outcome = Outcome()
        self.note_mismatches: list[str] = []
        self.exit_codes: dict[str, int | None] = {}

    # -- helpers -----------------------------------------------------------------------------------------

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- files -------------------------------------------------------------------------------------------

    def plan_files(self) -> None:
        source = Path(self.args.source).absolute()
        picked = select_files(source, self.args.files, self.args.seed)
        if len(picked) < self.args.files:
            raise SystemExit(
                f"chaos: only {len(picked)} usable files under {source}, {self.args.files} asked"
            )
        n_batches = max(1, min(self.args.batches, len(picked)))
        size = -(-len(picked) // n_batches)
        self.batches = [picked[i : i + size] for i in range(0, len(picked), size)]
        span = self.args.duration * 0.8
        self.batch_times = [span * i / max(1, len(self.batches) - 1) for i in range(len(self.batches))]

    def drop_batch(self, index: int) -> None:
        stage = self.staging / f"batch-{index:03d}"
        for src, rel in self.batches[index]:
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)  # keeps the source's (old) mtime: the watcher takes it at once
        for child in sorted(stage.iterdir()):
            _merge_by_rename(child, self.bucket / child.name)
        shutil.rmtree(stage, ignore_errors=True)
        for _, rel in self.batches[index]:
            st = os.lstat(self.bucket / rel)
            self.dropped[rel] = (st.st_size, st.st_mtime_ns, st.st_ino)

    # -- the chaos phase ---------------------------------------------------------------------------------

    def run_chaos(self) -> None:
        args = self.args
        cfg = write_config(
            self.base / "chaos.toml",
            workers=args.workers,
            bucket=self.bucket,
            notes=self.notes,
            state=self.state,
        )
        coord = Coordinator(self.base, cfg, self.state, "coordinator")
        self.coordinators.append(coord)
        duration = args.duration
        k = args.coordinator_kills
        kill_times = self.coordinator_kill_times(k)
        interval = args.worker_kill_ms / 1000.0
        next_drop = 0
        t0 = time.monotonic()
        coord.start()
        next_worker_kill = interval

        def pump_drops() -> None:
            nonlocal next_drop
            while next_drop < len(self.batches) and time.monotonic() - t0 >= self.batch_times[next_drop]:
                self.drop_batch(next_drop)
                next_drop += 1

        while True:
            now = time.monotonic() - t0
            pump_drops()
            if not coord.alive():
                code = coord.proc.returncode if coord.proc else None
                self.problem(f"coordinator exited by itself (code {code}) during chaos; see {coord.logs[-1]}")
                self.unexpected_exits += 1
                if self.unexpected_exits > 3:
                    raise Abort("the coordinator keeps exiting by itself; giving up")
                coord.start()
            if kill_times and now >= kill_times[0]:
                # Armed: kill once a job is committed `running` (a worker holds it), or after --seek-s anyway.
                running = jobs_running(self.state / "queue.db")
                if running or now - kill_times[0] >= self.args.seek_s:
                    kill_times.pop(0)
                    self.kills_in_flight += bool(running)
                    self.kill_coordinator(coord, pump_drops)
                    coord.start()
                    continue
            killing = bool(kill_times) if k else now < duration
            if killing and interval > 0 and now >= next_worker_kill:
                next_worker_kill = now + interval
                workers = coord.workers()
                if workers:
                    victim = self.rng.choice(workers)
                    try:
                        victim.send_signal(signal.SIGKILL)
                        self.worker_kills += 1
                    except psutil.Error:
                        pass
            if next_drop >= len(self.batches) and not kill_times and (k or now >= duration):
                break
            due = [duration - now]
            if next_drop < len(self.batches):
                due.append(self.batch_times[next_drop] - now)
            if kill_times:
                due.append(max(0.01, kill_times[0] - now))
            if killing and interval > 0:
                due.append(next_worker_kill - now)
            time.sleep(min(0.05, max(0.001, min(due))))

    def coordinator_kill_times(self, k: int) -> list[float]:
        """K moments at which a coordinator kill is armed. Random, but each 0-0.3 s after a batch arrives,
        when jobs are most likely in flight and records half-committed (a kill while everything is idle
        proves little). The batches are split into K runs; each kill follows a random batch of its run, the
        last one follows the last batch so every file arrives while the chaos lasts."""
        if not k:
            return []
        n = len(self.batches)
        times = []
        for i in range(k):
            lo, hi = i * n // k, max(i * n // k, (i + 1) * n // k - 1)
            batch = hi if i == k - 1 else self.rng.randint(lo, hi)
            times.append(self.batch_times[batch] + self.rng.uniform(0.0, 0.3))
        return sorted(times)

    def kill_coordinator(self, coord: Coordinator, pump: Callable[[], None]) -> None:
        """SIGKILL the coordinator, then wait for its workers to die by themselves (parent-death signal);
        any that outlive WORKERS_GONE_S is a failure, and is killed."""
        marker = str(self.base)
        coord.kill9()  # at once: the moment was chosen (a job in flight), looking around first would lose it
        self.coordinator_kills += 1
        deadline = time.monotonic() + WORKERS_GONE_S
        leftovers: list[psutil.Process] = []
        while True:
            pump()
            leftovers = [p for p in leftovers if not _gone(p)]
            leftovers += [p for p in processes_naming(marker) if p not in leftovers]
            if not leftovers:
                return
            if time.monotonic() >= deadline:
                for proc in leftovers:
                    try:
                        described = " ".join(proc.cmdline())[:160]
                    except psutil.Error:
                        described = "?"
                    self.problem(
                        f"process {proc.pid} outlived its coordinator by {WORKERS_GONE_S:g}s: {described}"
                    )
                    _kill_hard(proc)
                return
            time.sleep(0.05)

    # -- draining and stopping ---------------------------------------------------------------------------

    def drain(self, coord: Coordinator, reader: RecordReader, what: str) -> None:
        """Wait until no job is queued or running and every dropped version has a terminal record; then
        SIGTERM the coordinator and expect exit 0."""
        expected = {vkey(rel, v) for rel, v in self.dropped.items()}
        deadline = time.monotonic() + self.args.drain_timeout
        last: dict[str, Any] | None = None
        missing = set(expected)
        while True:
            if not coord.alive():
                code = coord.proc.returncode if coord.proc else None
                self.problem(f"{what}: coordinator exited by itself (code {code}); see {coord.logs[-1]}")
                return
            reader.refresh()
            missing = expected - reader.by_key().keys()
            if not missing:
                status = coord.status()
                if status is not None:
                    last = status
                    jobs = status.get("jobs", {})
                    if jobs.get("queued", 0) == 0 and jobs.get("running", 0) == 0:
                        break
            if time.monotonic() >= deadline:
                status = coord.status() or last
                reader.refresh()
                missing = expected - reader.by_key().keys()
                self.problem(
                    f"{what}: not settled after {self.args.drain_timeout:g}s: {len(missing)} dropped files "
                    f"without a record; jobs {status.get('jobs') if status else 'unknown (no answer)'}"
                )
                break
            time.sleep(0.3)
        code = coord.stop(timeout=60)
        self.exit_codes[what] = code
        if code != 0:
            self.problem(f"{what}: coordinator exit code on SIGTERM was {code}, not 0; see {coord.logs[-1]}")
        marker = str(self.base)
        left: list[psutil.Process] = []

        def none_left() -> bool:
            left[:] = processes_naming(marker)
            return not left

        if not _poll(none_left, 10):
            for proc in left:
                self.problem(f"{what}: process {proc.pid} still running after the coordinator stopped")
                _kill_hard(proc)

    # -- checks ------------------------------------------------------------------------------------------

    def check_run(self, what: str, reader: RecordReader, state: Path, notes: Path) -> Outcome:
        """One terminal record per dropped version, none for anything else, the queue agrees, notes exist."""
        out = Outcome()
        reader.refresh()
        for name, why in sorted(reader.unreadable.items()):
            self.problem(f"{what}: unreadable record file {name}: {why}")
        try:
            jobs, index = read_queue(state / "queue.db")
        except sqlite3.Error as exc:
            self.problem(f"{what}: cannot read {state / 'queue.db'}: {exc}")
            jobs, index = [], []
        superseded = {row["name"] for row in index if row.get("superseded")}
        indexed = {row["name"]: row for row in index}
        by_key = reader.by_key()
        dropped_keys = {vkey(rel, v): rel for rel, v in self.dropped.items()}
        for key, recs in sorted(by_key.items()):
            if key not in dropped_keys:
                rel = key[0]
                why = (
                    "a different version of a dropped file" if rel in self.dropped else "a file never dropped"
                )
                for rec in recs:
                    self.problem(f"{what}: record {rec.name} is for {why}: {rel} {key[1:]}")
        for key, rel in sorted(dropped_keys.items()):
            recs = [r for r in by_key.get(key, []) if r.name not in superseded]
            if not recs:
                out.lost.append(rel)
                self.problem(f"{what}: LOST: {rel} (version {key[1:]}) has no terminal record")
                continue
            if len(recs) > 1:
                out.duplicated.append(rel)
                names = ", ".join(f"{r.name} ({r.state})" for r in sorted(recs, key=lambda r: r.name))
                self.problem(f"{what}: DUPLICATED: {rel} has {len(recs)} terminal records: {names}")
            rec = sorted(recs, key=lambda r: r.name)[0]
            out.states[rel] = rec.state
            out.records[rel] = rec
        # The queue: nothing left in flight, one job per dropped version, agreeing with its record file.
        for row in jobs:
            if row["state"] not in ("done", "failed", "quarantined"):
                self.problem(f"{what}: job {row['id']} ({row['relpath']}) left {row['state']} in queue.db")
        jobs_by_key: dict[VersionKey, list[dict[str, Any]]] = defaultdict(list)
        for row in jobs:
            jobs_by_key[(row["relpath"], row["size"], row["mtime_ns"], row["inode"])].append(row)
        for key, rel in sorted(dropped_keys.items()):
            rows = jobs_by_key.get(key, [])
            if len(rows) != 1:
                self.problem(f"{what}: {rel} has {len(rows)} jobs in queue.db, not 1")
                continue
            row, found = rows[0], out.records.get(rel)
            if found is None:
                continue
            rec = found
            if rec.job_id != row["id"]:
                self.problem(
                    f"{what}: record {rec.name} names job {rec.job_id}, but {rel} is job {row['id']}"
                )
            if row["state"] != rec.state:
                self.problem(
                    f"{what}: {rel}: job {row['id']} is {row['state']} in queue.db, "
                    f"its record says {rec.state}"
                )
            if row["record"] != rec.name:
                self.problem(f"{what}: {rel}: job {row['id']} names record {row['record']}, not {rec.name}")
        for name in sorted(reader.records.keys() - indexed.keys()):
            self.problem(f"{what}: record file {name} is not in queue.db's records index")
        for name in sorted(indexed.keys() - reader.records.keys()):
            self.problem(f"{what}: queue.db indexes record {name}, but there is no such file")
        # Notes: every SUCCESS has one, about the same bytes; no note for a file that was never dropped.
        for rel, rec in sorted(out.records.items()):
            if rec.state != "done":
                continue
            note_path = notes / f"{rel}.obs.md"
            try:
                note = note_path.read_text(encoding="utf-8")
            except OSError as exc:
                self.problem(f"{what}: {rel} has SUCCESS record {rec.name} but no note ({exc.strerror})")
                continue
            actual = _sha256(self.bucket / rel)
            if front_matter_value(note, "sha256") != actual or rec.sha256 != actual:
                self.problem(f"{what}: {rel}: note or record sha256 does not match the file's {actual}")
        stray_temps = 0
        for path in notes.rglob("*"):
            if path.is_dir():
                continue
            rel_note = path.relative_to(notes).as_posix()
            if path.name.startswith("."):
                stray_temps += 1
            elif not rel_note.endswith(".obs.md") or rel_note[: -len(".obs.md")] not in self.dropped:
                self.problem(f"{what}: note {rel_note} is for no dropped file")
        if stray_temps:
            self.notes_.append(
                f"{what}: {stray_temps} temp file(s) left in the notes dir (workers killed mid-write)"
            )
        if reader.temp_files:
            self.notes_.append(f"{what}: {reader.temp_files} temp file(s) left in the records dir")
        return out

    def compare_runs(self) -> None:
        chaos, calm = self.chaos_outcome, self.calm_outcome
        for rel in sorted(self.dropped):
            a, b = chaos.states.get(rel), calm.states.get(rel)
            if a == "done" and b == "done":
                try:
                    one = (self.notes / f"{rel}.obs.md").read_text(encoding="utf-8")
                    two = (self.base / "calm-notes" / f"{rel}.obs.md").read_text(encoding="utf-8")
                except OSError:
                    continue  # a missing note is already a problem of its run
                if strip_volatile(one) != strip_volatile(two):
                    self.note_mismatches.append(rel)
                    self.problem(f"note mismatch: {rel}: the chaos run's note differs from the calm run's")
            elif {a, b} == {"done", "failed"}:
                failed = chaos.records[rel] if a == "failed" else calm.records[rel]
                run = "chaos" if a == "failed" else "calm"
                self.problem(
                    f"outcome differs: {rel} failed in the {run} run ({failed.category}: {failed.message}) "
                    f"but succeeded in the other"
                )

    # -- everything --------------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            return self._run()
        except Abort as exc:
            self.problem(str(exc))
            return self.report()

    def _run(self) -> int:
        self.plan_files()
        self.run_chaos()
        coord = self.coordinators[-1]
        reader = RecordReader(self.state / "records")
        self.drain(coord, reader, "chaos run")
        self.chaos_outcome = self.check_run("chaos run", reader, self.state, self.notes)
        # The calm run: the same files in the same bucket, fresh state and notes, nobody killed.
        calm_state, calm_notes = self.base / "calm-state", self.base / "calm-notes"
        cfg = write_config(
            self.base / "calm.toml",
            workers=self.args.workers,
            bucket=self.bucket,
            notes=calm_notes,
            state=calm_state,
        )
        calm = Coordinator(self.base, cfg, calm_state, "calm")
        self.coordinators.append(calm)
        calm.start()
        calm_reader = RecordReader(calm_state / "records")
        self.drain(calm, calm_reader, "calm run")
        self.calm_outcome = self.check_run("calm run", calm_reader, calm_state, calm_notes)
        self.compare_runs()
        return self.report()

    def numbers(self) -> dict[str, Any]:
        chaos = self.chaos_outcome
        counts = Counter(chaos.states.values())
        return {
            "files": len(self.dropped),
            "workers": self.args.workers,
            "seed": self.args.seed,
            "worker_kills": self.worker_kills,
            "coordinator_kills": self.coordinator_kills,
            "coordinator_kills_with_jobs_running": self.kills_in_flight,
            "recovery": dict(recovery_reports(self.coordinators[0].logs if self.coordinators else [])),
            "done": counts.get("done", 0),
            "failed": counts.get("failed", 0),
            "quarantined": counts.get("quarantined", 0),
            "lost": len(chaos.lost),
            "duplicated": len(chaos.duplicated),
            "note_mismatches": len(self.note_mismatches),
            "calm": dict(Counter(self.calm_outcome.states.values())),
            "failed_files": sorted(r for r, s in chaos.states.items() if s == "failed"),
            "quarantined_files": sorted(r for r, s in chaos.states.items() if s == "quarantined"),
            "problems": list(self.problems),
            "remarks": list(self.notes_),
            "exit_codes": dict(self.exit_codes),
            "elapsed_s": round(self.elapsed(), 2),
            "base": str(self.base),
            "ok": not self.problems,
        }

    def report(self) -> int:
        n = self.numbers()
        verdict = "OK" if n["ok"] else "FAIL"
        print(
            f"chaos: {n['files']} files, {n['worker_kills']} worker kills, "
            f"{n['coordinator_kills']} coordinator kills: "
            f"{n['done']} done, {n['failed']} failed, {n['quarantined']} quarantined; "
            f"{n['lost']} lost, {n['duplicated']} duplicated, "
            f"{n['note_mismatches']} note mismatches: {verdict}",
            flush=True,
        )
        for rel in n["quarantined_files"]:
            rec = self.chaos_outcome.records[rel]
            print(f"  quarantined: {rel}: {rec.category}: {rec.message}")
        for rel in n["failed_files"]:
            rec = self.chaos_outcome.records[rel]
            print(f"  failed: {rel}: {rec.category}: {rec.message}")
        for remark in n["remarks"]:
            print(f"  note: {remark}")
        for problem in n["problems"][:200]:
            print(f"  PROBLEM: {problem}")
        if len(n["problems"]) > 200:
            print(f"  ... and {len(n['problems']) - 200} more problems")
        if not n["ok"] or self.args.keep:
            print(
                f"  logs and state: {self.base}" + ("" if self.args.keep else " (removed; rerun with --keep)")
            )
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(n, indent=2) + "\n")
        return 0 if n["ok"] else 1

    def cleanup(self) -> None:
        """On every exit path: no coordinator, worker or helper that names our base dir survives."""
        for coord in self.coordinators:
            coord.kill_group()
        marker = str(self.base)
        for _ in range(3):
            left = processes_naming(marker)
            if not left:
                break
            for proc in left:
                _kill_hard(proc)
            _poll(lambda: not processes_naming(marker), 5)
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _poll(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chaos.py",
        description="Kill workers and the coordinator while files arrive; check every file version ends in "
        "exactly one terminal record and the notes match a calm run.",
    )
    p.add_argument("--files", type=int, default=300, help="files to drop (default 300)")
    p.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    p.add_argument("--worker-kill-ms", type=int, default=300, help="SIGKILL a random worker this often")
    p.add_argument("--coordinator-kills", type=int, default=3, help="SIGKILL the coordinator this many times")
    p.add_argument("--seed", type=int, default=1, help="file selection and kill schedule (default 1)")
    p.add_argument(
        "--source", default=sysconfig.get_paths()["stdlib"], help="where to take files from (default: stdlib)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of chaos (default 10)")
    p.add_argument("--batches", type=int, default=10, help="files arrive in this many batches (default 10)")
    p.add_argument(
        "--drain-timeout", type=float, default=120.0, help="seconds to wait for the queue to settle"
    )
    p.add_argument(
        "--seek-s",
        type=float,
        default=2.0,
        help="an armed coordinator kill waits up to this long for a job in flight (0: kill at once)",
    )
    p.add_argument("--base", help="make the run's directory inside DIR (default /tmp); keep the path short")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (logs, state, notes)")
    p.add_argument("--json", metavar="FILE", help="write the numbers as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.files < 1 or args.workers < 1 or args.coordinator_kills < 0 or args.worker_kill_ms < 0:
        print("chaos: --files and --workers must be >= 1, kills >= 0", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    longest = Path(args.base or "/tmp").absolute() / "chaos-xxxxxxxx" / "calm-state" / "run" / "control.sock"
    if len(str(longest).encode()) >= 107:
        print(
            f"chaos: --base {args.base} is too long for unix socket paths; pick a shorter one",
            file=sys.stderr,
        )
        return 2
    chaos = Chaos(args)
    try:
        return chaos.run()
    except KeyboardInterrupt:
        print(f"chaos: interrupted; cleaning up {chaos.base}", file=sys.stderr)
        return 130
    finally:
        chaos.cleanup()


if __name__ == "__main__":
    sys.exit(main())
