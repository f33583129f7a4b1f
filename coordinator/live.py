"""Changing a running service's configuration: a reload (SIGHUP, `ob-ctl reload`), or one bucket added or
removed by an operator (`ob-ctl bucket add | remove`).

Every change is checked in full before anything moves, then applied in one place (`_apply`), in an order
that leaves the service as it was if the one step that can fail (watching a new root) fails:

    notes dirs of new buckets created → watcher: removed buckets unwatched, new ones watched
    → removed buckets' queued jobs parked → the service, outcomes, jails and watcher take the config
    → supervisor.reconfigure (workers, policies, balancer, workers' settings)
    → sandbox catch-up: outdated workers replaced; new buckets' jobs held until the workers reach them

A bucket added at run time lasts until the next restart or reload: the file is the truth, and a reload
compares the running config (with the added bucket) against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from coordinator.config import BucketConfig, Config, ConfigError, config_from, load_config
from coordinator.jails import SandboxUnavailable
from coordinator.placement import moved_outputs, placement_problem
from coordinator.reload import plan_reload, with_buckets
from coordinator.sandbox_sync import SandboxSync
from coordinator.states import JobState
from coordinator.watcher import Watcher

if TYPE_CHECKING:
    from coordinator.service import Service


class Refused(Exception):
    """A change the service did not make; `str()` is the one line saying why. Nothing was changed."""


class LiveConfig:
    """Applies configuration changes to the running service (see the module docstring)."""

    def __init__(self, service: Service, config_path: Path | None, overrides: dict[str, Any]) -> None:
        self.service = service
        self.config_path = config_path  # the file the service started from (None: the built-in defaults)
        self.overrides = overrides  # the command line's, applied again over the re-read file
        self.sync = SandboxSync(service.jails, service.supervisor, service.jobs)
        # Buckets removed with --cancel: a job of theirs that comes back to the queue later (it was running
        # and its worker died, say) is cancelled too, until a bucket of that name returns.
        self.cancelling: set[str] = set()

    # -- reload ------------------------------------------------------------------------------------------

    def reload(self, why: str) -> dict[str, list[str]]:
        """Re-read the config file and apply what can change now. Raises Refused (logged as one line) when
        the new config is invalid; the running one then stays, untouched."""
        svc = self.service
        try:
            self._not_stopping()
            new = load_config(self.config_path, self.overrides)
            plan = plan_reload(svc.config, new, str(self.config_path or "<defaults>"))
            self._check_sandbox(plan.config)
            recycling = self._apply(plan.config, plan.removed, plan.added)
        except (ConfigError, Refused) as exc:
            logger.error("config reload refused: {}", exc)
            raise Refused(str(exc)) from None
        except OSError as exc:  # a path check that may not look (EACCES): refused like any bad config
            logger.error("config reload refused: {}", exc)
            raise Refused(f"cannot check the new config: {exc}") from None
        for line in plan.kept:
            logger.warning("{}", line)
        changes = plan.changes + recycling
        logger.info("config reloaded ({}): {}", why, "; ".join(changes) or "nothing changed")
        return {"changes": changes, "kept": plan.kept}

    # -- one bucket --------------------------------------------------------------------------------------

    def add_bucket(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Watch one more bucket (`fields` as in a `[[buckets]]` table), checked by every rule of the config
        and of `coordinator.placement`. Raises Refused."""
        self._not_stopping()
        current = self.service.config
        data = current.model_dump()
        data["buckets"] = [*data["buckets"], fields]
        try:
            candidate = config_from(data, "the config with this bucket")
        except ConfigError as exc:
            raise Refused(str(exc)) from None
        bucket = candidate.buckets[-1]
        moved = moved_outputs(current, candidate)
        if moved:
            name, was, now = moved[0]
            raise Refused(
                f"adding bucket {bucket.name!r} would move bucket {name!r}'s notes from {was} to {now} "
                "(buckets sharing service.output write under <output>/<name>); give it its own --output"
            )
        problem = placement_problem(candidate, bucket)
        if problem is not None:
            raise Refused(f"bucket {bucket.name!r}: {problem}")
        self._check_sandbox(candidate)
        self._apply(candidate, [], [bucket])
        logger.info(
            "bucket {} added by an operator: {} -> {} (until the next restart or reload)",
            bucket.name,
            bucket.path,
            candidate.bucket_output(bucket),
        )
        return self._row(bucket, self.service.jobs.queued_by_bucket()[bucket.name]) | {
            "held_back": bucket.name in self.sync.waiting
        }

    def remove_bucket(self, target: str, path: str | None, *, cancel: bool) -> dict[str, Any]:
        """Stop watching the bucket named `target` (or whose root is `path`): its queued jobs are parked, or
        with `cancel` each ends with a Cancelled ERROR record; its running jobs finish. Raises Refused."""
        self._not_stopping()
        svc = self.service
        if cancel and target in svc.jobs.parked() and target not in {b.name for b in svc.config.buckets}:
            cancelled = self._cancel(target)  # a bucket already gone (removed before, or before a restart)
            self.cancelling.add(target)
            return {
                "bucket": target,
                "parked": svc.jobs.parked_count(target),
                "cancelled": cancelled,
                "running": 0,
            }
        bucket = self.find(target, path)
        rest = [b for b in svc.config.buckets if b.name != bucket.name]
        if not rest:
            raise Refused(f"bucket {bucket.name!r} is the only one; the service watches at least one bucket")
        outputs = {b.name: svc.config.bucket_output(b) for b in rest}  # the others' notes stay where they are
        try:
            config = with_buckets(svc.config, rest, outputs, "bucket remove")
        except ConfigError as exc:  # a grep rule names it, say
            raise Refused(str(exc)) from None
        self._apply(config, [bucket.name], [])
        cancelled = 0
        if cancel:
            cancelled = self._cancel(bucket.name)
            self.cancelling.add(bucket.name)
        parked = svc.jobs.parked_count(bucket.name)
        running = sum(1 for s in svc.supervisor.slots if s.job is not None and s.job.bucket == bucket.name)
        logger.info(
            "bucket {} removed by an operator: {} queued job(s) parked, {} cancelled, {} running finish",
            bucket.name,
            parked,
            cancelled,
            running,
        )
        return {"bucket": bucket.name, "parked": parked, "cancelled": cancelled, "running": running}

    def find(self, target: str, path: str | None) -> BucketConfig:
        """The running bucket named `target`, else the one whose root is `path`; Refused names them all."""
        buckets = self.service.config.buckets
        for bucket in buckets:
            if bucket.name == target:
                return bucket
        if path is not None:
            for bucket in buckets:
                if os.path.realpath(bucket.path.expanduser()) == os.path.realpath(path):
                    return bucket
        names = ", ".join(f"{b.name} ({b.path})" for b in buckets)
        raise Refused(f"no bucket named or at {target!r} (buckets: {names})")

    # -- reading -----------------------------------------------------------------------------------------

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """The running buckets, and the parked jobs of buckets that are gone, for `ob-ctl bucket list`."""
        jobs = self.service.jobs
        names = {b.name for b in self.service.config.buckets}
        queued = jobs.queued_by_bucket()
        return {
            "buckets": [self._row(b, queued[b.name]) for b in self.service.config.buckets],
            "gone": [
                {"name": name, "parked": count, "queued": queued[name]}
                for name, count in jobs.parked().items()
                if name not in names
            ],
        }

    def _row(self, bucket: BucketConfig, queued: int) -> dict[str, Any]:
        jobs = self.service.jobs
        return {
            "name": bucket.name,
            "path": str(bucket.path.expanduser().absolute()),
            "output": str(self.service.config.bucket_output(bucket)),
            "patterns": list(bucket.patterns),
            "ignore": list(bucket.ignore),
            "queued": queued,
            "parked": jobs.parked_count(bucket.name),
        }

    def tick(self) -> None:
        """Called by the loop with the supervisor's tick: the sandbox catch-up's next step, and cancelling
        what came back to the queue of a bucket removed with --cancel."""
        self.sync.tick()
        if self.cancelling:
            running = {b.name for b in self.service.config.buckets}
            self.cancelling -= running  # it returned: its jobs are wanted again
            for name in self.cancelling:
                self._cancel(name)

    def _cancel(self, bucket: str) -> int:
        """End every parked job of `bucket` with a Cancelled ERROR record; how many ended (a record that
        could not be written leaves its job queued, retried)."""
        why = f"bucket {bucket!r} was removed with --cancel before the file was processed"
        jobs = self.service.jobs.parked_jobs(bucket)
        for job in jobs:
            self.service.outcomes.cancelled(job, why)
        return sum(job.state is not JobState.QUEUED for job in jobs)

    # -- applying ----------------------------------------------------------------------------------------

    def _check_sandbox(self, config: Config) -> None:
        """Refuse a config whose workers' sandbox would hold the state dir, or could not be built."""
        try:
            self.service.jails.check_paths(config)
        except (SandboxUnavailable, ValueError) as exc:  # ValueError: a spec past its limits (paths)
            raise Refused(str(exc)) from None

    def _not_stopping(self) -> None:
        if self.service.supervisor.stopping:
            raise Refused("the coordinator is stopping")

    def _apply(self, config: Config, removed: list[str], added: list[BucketConfig]) -> list[str]:
        """Run with `config` (already checked): see the module docstring for the order. Returns what the
        summary of a reload does not already say: which workers are being replaced."""
        svc = self.service
        for bucket in added:
            output = config.bucket_output(bucket)
            try:
                output.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Refused(
                    f"bucket {bucket.name!r}: cannot create {output}: {exc.strerror or exc}"
                ) from None
        self._rewatch([b for b in svc.config.buckets if b.name in removed], added)
        for name in removed:
            svc.jobs.park(name)
            self.sync.forget(name)
        svc.adopt_config(config)
        recycling = [c for c in svc.supervisor.reconfigure(config, svc.clock()) if "recycl" in c]
        self.sync.changed({b.name: (_root(b), str(config.bucket_output(b))) for b in added})
        if self.sync.active:
            recycling.append("workers' sandboxes (each worker is replaced in turn)")
        return recycling

    def _rewatch(self, removed: list[BucketConfig], added: list[BucketConfig]) -> None:
        """Swap the watcher's buckets; if a new root cannot be watched, put everything back and refuse."""
        watcher = self.service.watcher
        for bucket in removed:
            if bucket.name in watcher.bucket_names:  # (not if an earlier rollback could not watch it again)
                watcher.remove_bucket(bucket.name)
        done: list[BucketConfig] = []
        try:
            for bucket in added:
                _watch(watcher, bucket)
                done.append(bucket)
        except (OSError, ValueError) as exc:
            for bucket in done:
                watcher.remove_bucket(bucket.name)
            for bucket in removed:
                try:
                    _watch(watcher, bucket)
                except (OSError, ValueError) as again:
                    logger.error("bucket {}: cannot watch it again: {}", bucket.name, again)
            failed = added[len(done)]
            raise Refused(f"bucket {failed.name!r}: cannot watch {_root(failed)}: {exc}") from None


def _watch(watcher: Watcher, bucket: BucketConfig) -> None:
    watcher.add_bucket(bucket.name, Path(_root(bucket)), list(bucket.patterns), list(bucket.ignore))


def _root(bucket: BucketConfig) -> str:
    """A bucket's root as the watcher spells it, so a parked job's path is rebuilt the same way."""
    return os.path.abspath(bucket.path.expanduser())
