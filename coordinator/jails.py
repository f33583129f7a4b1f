"""Jails: what the coordinator prepares for each worker's sandbox, and what it cleans up after it.

The worker builds its own sandbox (worker/sandbox/), but some of it must come from outside:

    before the worker starts   a private scratch dir (run/scratch/<name>, 0700), the canary file it must
                               fail to read, a minimal environment, and the `SandboxSpec` on its command line
    right after it started     its pid written into its own cgroup (memory.max, pids.max, cgroup.kill)
    after it exited            whatever it left running is killed (cgroup.kill reaches setsid'ed,
                               double-forked grandchildren that killpg misses), the cgroup's OOM and
                               pids counters say what killed it, the cgroup and scratch dir are removed

A cgroup that is still populated cannot be removed yet: `tick` retries it. Without usable cgroups
(`WorkerCgroups.create` failed) workers run without that layer and the reason is logged and reported.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from coordinator.cgroups import CgroupLimits, CgroupUnavailable, WorkerCgroups, WorkerGroup
from coordinator.config import Config
from coordinator.janitor import Janitor
from protocol.sandbox import BASE_LAYERS, KERNEL_LAYERS, LayerReport, SandboxLimits, SandboxSpec

#: The only variables a worker inherits: nothing secret, nothing that changes how Python or tools behave
#: beyond locale and time zone. HOME and TMPDIR point into the scratch dir.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: How long the start-up probe may take (it is a worker start without the socket).
PROBE_TIMEOUT_S = 30.0


class SandboxUnavailable(Exception):
    """A layer `sandbox.require` names is not available here; `str()` is the one line to show."""


@dataclass(frozen=True)
class Aftermath:
    """What the jail saw of a worker that exited."""

    oom_kills: int = 0  # processes the kernel OOM-killed in its cgroup (memory limit)
    pids_limit_hits: int = 0  # forks refused at pids.max
    leftovers: int = 0  # processes still in its cgroup when it exited, killed now


@dataclass
class Jail:
    """One worker process's scratch dir, cgroup and spec."""

    name: str
    scratch: Path
    group: WorkerGroup | None
    spec: SandboxSpec
    pid: int | None = None
    baseline: tuple[int, int] = (0, 0)  # the cgroup's (OOM kills, refused forks) already accounted for


class Jails:
    """Prepares, tracks and tears down every worker's jail."""

    def __init__(self, config: Config, run_dir: Path, *, cgroup_tag: str | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.scratch_root = run_dir / "scratch"
        self.canary = run_dir / "canary"
        self.limits = _limits(config)
        self.cgroups: WorkerCgroups | None = None
        self.cgroup_problem = ""
        self._cgroup_tag = cgroup_tag
        self.janitor = Janitor(run_dir / "trash")
        self._by_pid: dict[int, Jail] = {}
        self._to_remove: list[Jail] = []

    # -- set-up ------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Check the paths, then create the cgroup root (where the kernel lets us), the scratch root and the
        canary."""
        self.check_paths()
        # Cgroups first: creating them kills what a SIGKILLed previous run left running, and only then is
        # its scratch dir safe to take away.
        if "cgroup" in self.config.sandbox.disable:
            self.cgroup_problem = "disabled by config"
        else:
            try:
                self.cgroups = WorkerCgroups.create(self._cgroup_limits(), tag=self._cgroup_tag)
                logger.info("worker cgroups: {}", self.cgroups.describe())
            except CgroupUnavailable as exc:
                self.cgroup_problem = str(exc)
                logger.warning("workers run without cgroups: {}", exc)
        self.janitor.start()
        self.janitor.discard(self.scratch_root)  # a previous run's, if it died
        self.scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.canary.write_text(f"open-buckets canary {secrets.token_hex(8)}: workers must not read this\n")

    def close(self) -> None:
        """Kill and remove every jail (best effort: we are stopping)."""
        for jail in [*self._by_pid.values(), *self._to_remove]:
            self._teardown(jail)
        self._by_pid.clear()
        self._to_remove.clear()
        if self.cgroups is not None:
            self.cgroups.close()
        self.janitor.discard(self.scratch_root)
        self.janitor.stop()
        self.canary.unlink(missing_ok=True)

    # -- one worker --------------------------------------------------------------------------------------

    def prepare(self, name: str) -> Jail:
        """A fresh jail for the worker process about to be started as `name`."""
        scratch = self.scratch_root / name
        self.janitor.discard(scratch)  # only if a name were ever reused
        scratch.mkdir(mode=0o700)
        group = None
        if self.cgroups is not None:
            try:
                group = self.cgroups.new_group(f"w{name}")
            except OSError as exc:
                logger.warning("worker {}: no cgroup: {}", name, exc)
        return Jail(name, scratch, group, self.spec(scratch, group))

    def check_paths(self, config: Config | None = None) -> None:
        """Refuse a config (ours, or `config`: one about to be applied) whose sandbox would be void: a path
        workers may read or write that holds the state dir (the queue, the records, the canary). Raises
        SandboxUnavailable."""
        cfg = config or self.config
        if "landlock" in cfg.sandbox.disable:
            return
        spec = self.spec(self.scratch_root / "check", None, cfg)
        state = str(self.run_dir.parent)
        for what, paths in (("read", spec.read), ("write", spec.write), ("execute", spec.execute)):
            for path in paths:
                if _holds(path, state):
                    raise SandboxUnavailable(
                        f"sandbox: workers may {what} {path}, which holds the state dir {state}; "
                        "move service.state_dir out of the buckets and outputs"
                    )

    def spec(self, scratch: Path, group: WorkerGroup | None, config: Config | None = None) -> SandboxSpec:
        """The sandbox a worker with this scratch dir and cgroup is asked to build (under our config, or
        under `config`)."""
        cfg = config or self.config
        read = [str(b.path.expanduser().absolute()) for b in cfg.buckets]
        read += [str(p.expanduser().absolute()) for p in (*cfg.jobs.skill_paths, *cfg.sandbox.read_paths)]
        write = sorted({str(cfg.bucket_output(b)) for b in cfg.buckets})
        return SandboxSpec(
            read=read,
            write=write,
            execute=_command_programs(cfg),
            scratch=str(scratch),
            canary=str(self.canary),
            cgroup=[str(d) for d in group.dirs] if group is not None else [],
            limits=self.limits,
            disable=list(cfg.sandbox.disable),
        )

    def reconfigure(self, config: Config) -> None:
        """A reloaded config (buckets, command skills, limits): workers started from now on get its sandbox.
        Running ones keep the one they built, which cannot be widened from outside: `outdated` names them,
        so they can be replaced."""
        self.config = config
        self.limits = _limits(config)
        if self.cgroups is not None:
            self.cgroups.limits = self._cgroup_limits()  # for the cgroups of workers started from now on

    def _cgroup_limits(self) -> CgroupLimits:
        return CgroupLimits(memory_bytes=self.limits.memory_bytes, pids_max=self.limits.processes)

    def outdated(self) -> set[int]:
        """Pids of the live workers whose sandbox is not the one the config asks for now: other buckets,
        outputs, programs, limits or disabled layers."""
        want = _policy(self.spec(self.scratch_root, None))
        return {pid for pid, jail in self._by_pid.items() if _policy(jail.spec) != want}

    def env(self, jail: Jail) -> dict[str, str]:
        """The worker's whole environment."""
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        env.update(HOME=str(jail.scratch), TMPDIR=str(jail.scratch))
        return env

    def started(self, jail: Jail, pid: int) -> None:
        """The worker process exists: put it in its cgroup before it touches any file."""
        jail.pid = pid
        self._by_pid[pid] = jail
        if jail.group is not None:
            try:
                jail.group.add(pid)
            except OSError as exc:  # the worker sees it is not in its cgroup and reports the layer missing
                logger.warning("worker {}: cannot join its cgroup: {}", jail.name, exc)

    def exited(self, pid: int) -> Aftermath:
        """The worker `pid` exited: say what the kernel saw. What it left behind is killed and its jail
        removed by the next `tick`, which the service's loop runs after dispatching, so the retry of the
        dead worker's job on a warm spare does not wait for the clean-up (milliseconds of cgroup writes)."""
        jail = self._by_pid.pop(pid, None)
        if jail is None:
            return Aftermath()
        aftermath = Aftermath()
        if jail.group is not None:
            left = len(jail.group.pids())
            oom, refused = jail.group.oom_kills(), jail.group.pids_limit_hits()
            aftermath = Aftermath(oom - jail.baseline[0], refused - jail.baseline[1], left)
            if left:
                logger.info("worker {}: killing {} process(es) it left behind", jail.name, left)
        self._to_remove.append(jail)
        return aftermath

    def rebase(self, pid: int) -> None:
        """The worker `pid` answered for a job that failed: whatever its cgroup counted so far (a command
        OOM-killed, forks refused) belongs to that job, so a later death is not blamed on it. Only read
        after failures, which are rare, to keep the cgroup files off the path of every job."""
        jail = self._by_pid.get(pid)
        if jail is not None and jail.group is not None:
            jail.baseline = (jail.group.oom_kills(), jail.group.pids_limit_hits())

    def tick(self) -> None:
        """Tear down the jails of exited workers (again, for a cgroup that was still busy)."""
        if self._to_remove:
            self._to_remove = [j for j in self._to_remove if not self._teardown(j)]

    def _teardown(self, jail: Jail) -> bool:
        """Kill what is left in the jail's cgroup, remove the cgroup, then (nothing can write it any more)
        its scratch dir; False while the cgroup is still busy (`tick` retries)."""
        if jail.group is not None:
            jail.group.kill()
            if not jail.group.remove():
                return False
            if self.cgroups is not None:
                self.cgroups.forget(jail.group)
        self.janitor.discard(jail.scratch)
        return True

    def abandon(self, jail: Jail) -> None:
        """The worker for `jail` never started (Popen failed): undo `prepare`."""
        if not self._teardown(jail):
            self._to_remove.append(jail)

    # -- the start-up probe ------------------------------------------------------------------------------

    def probe(self) -> list[LayerReport]:
        """Build a worker's sandbox once, in a throwaway process, and return what it verified."""
        jail = self.prepare("probe")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "--probe", "--sandbox", jail.spec.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=jail.scratch,
                env=self.env(jail),
                close_fds=True,
                start_new_session=True,
            )
            self.started(jail, proc.pid)
            try:
                out, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            reports = _parse_probe(out)
            if reports is None:
                tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise SandboxUnavailable(f"sandbox probe failed (exit {proc.returncode}): {tail[0]}")
            return reports
        finally:
            if jail.pid is not None:
                self.exited(jail.pid)
                self.tick()

    def required(self, reports: list[LayerReport]) -> list[str]:
        """The layers every worker must verify; raise SandboxUnavailable if one is missing here."""
        by_name = {r.name: r for r in reports}
        wanted = self.config.sandbox.require
        if wanted == "auto":
            # Linux: what works here; elsewhere only what every platform has (ARCHITECTURE section 5).
            kernel = [n for n in KERNEL_LAYERS if by_name.get(n) and by_name[n].active]
            names = list(BASE_LAYERS) + kernel if sys.platform.startswith("linux") else []
        else:
            names = list(wanted)
        for name in names:
            report = by_name.get(name)
            if report is None or not report.active:
                why = report.detail if report is not None else "not reported by the worker"
                raise SandboxUnavailable(f"sandbox.require: layer {name!r} is unavailable: {why}")
        return names


def _limits(config: Config) -> SandboxLimits:
    jobs = config.jobs
    return SandboxLimits(
        memory_bytes=jobs.max_memory_bytes,
        cpu_s=jobs.max_cpu_s,
        fsize_bytes=jobs.max_output_bytes,
        processes=jobs.max_processes,
    )


def _policy(spec: SandboxSpec) -> tuple[object, ...]:
    """What a sandbox allows, without what is the worker's own (scratch dir, cgroup): order does not count."""
    return (sorted(spec.read), sorted(spec.write), sorted(spec.execute), spec.limits, sorted(spec.disable))


def _command_programs(cfg: Config) -> list[str]:
    """The absolute paths in command skills' templates that are files: their programs and the scripts they
    are given (`["sh", "/opt/skills/pdf.sh", "{input}"]`) are readable and executable. Never a directory:
    an argument such as "/" must not open up the whole tree. The rest is found on PATH."""
    out: list[str] = []
    for rule in cfg.skills:
        for arg in rule.command or []:
            if os.path.isabs(arg) and "{" not in arg and os.path.isfile(arg) and arg not in out:
                out.append(arg)
    return out


def _holds(path: str, inner: str) -> bool:
    """Whether `inner` is `path` or lies below it."""
    outer = os.path.realpath(path)
    return os.path.commonpath([outer, os.path.realpath(inner)]) == outer


def _parse_probe(out: bytes) -> list[LayerReport] | None:
    for line in reversed(out.decode(errors="replace").splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, list):
            try:
                return [LayerReport.from_dict(item) for item in data]
            except ValueError:
                return None
    return None
