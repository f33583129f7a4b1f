"""The work one EXECUTE asks for: run the pipeline on the file and describe the outcome as a RESULT."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable

from protocol.messages import Config, Execute, Result
from worker.pipeline.context import ContextCollector
from worker.pipeline.grep import GrepRules
from worker.pipeline.process import process_file
from worker.skills import SkillChooser
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep


def run_job(
    worker_name: str,
    config: Callable[[], Config],
    job_starts: Callable[[], None] = lambda: None,
    job_ends: Callable[[], None] = lambda: None,
) -> Callable[[Execute], Result]:
    """A job function bound to this worker and its current CONFIG; raises the pipeline's JobError for a
    file that fails. `job_starts` is called first (limits set per job), `job_ends` last, however the job
    ended (what the job left running is killed there)."""

    # The skill chooser and grep rules built for the CONFIG in force (rebuilt when a new one arrives); the
    # external tools' circuit breakers, and the context scans a burst shares, live as long as the worker.
    built_for: list[tuple[Config, SkillChooser, GrepRules]] = []
    breakers = Breakers()
    dirgrep = DirectoryGrep(breakers)
    collector = ContextCollector(dirgrep)

    def work(job: Execute) -> Result:
        try:
            return _work(job)
        finally:
            job_ends()

    def _work(job: Execute) -> Result:
        started = time.monotonic()
        job_starts()
        cfg = config()
        if cfg.pipeline == "noop":
            return Result(job_id=job.job_id, duration_s=time.monotonic() - started)
        current = cfg.limits
        if not built_for or built_for[0][0] is not cfg:
            _add_import_paths(cfg.skill_paths)
            built_for[:] = [(cfg, SkillChooser(cfg.skills, breakers), GrepRules(cfg.grep))]
        _, chooser, grep = built_for[0]
        facts = process_file(
            job.path,
            job.output_path,
            bucket=job.bucket,
            relpath=job.relpath,
            worker=worker_name,
            max_input_bytes=current.max_input_bytes,
            preview_lines=current.preview_lines,
            expect=None if job.size is None else (job.size, job.mtime_ns or 0, job.inode or 0),
            job_id=job.job_id,
            skills=chooser,
            grep=grep,
            dirgrep=dirgrep,
            notes=cfg.notes,
            context=job.context,
            collector=collector,
        )
        duration = time.monotonic() - started
        return Result(job_id=job.job_id, output_path=job.output_path, duration_s=duration, facts=facts)

    return work


def _add_import_paths(paths: list[str]) -> None:
    """Handler skills are imported from the configured `skill_paths` first, then the environment."""
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.invalidate_caches()
