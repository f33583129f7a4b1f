"""The config, turned into the pure policy objects the supervisor runs on, and into the CONFIG message
every worker gets; one place, so a reload builds them exactly as the start did."""

from __future__ import annotations

from coordinator.backoff import RestartPolicy
from coordinator.breaker import BreakerPolicy
from coordinator.config import Config
from coordinator.fleet import FleetPolicy
from protocol.messages import Config as ConfigMessage
from protocol.messages import GrepRule, Limits, NoteSettings, SkillRule


def job_deadline(config: Config, size: int | None) -> float:
    """A job's deadline: the base, plus the per-MiB allowance for its input's size."""
    jobs = config.jobs
    return jobs.deadline_s + jobs.deadline_per_mb_s * (size or 0) / (1024 * 1024)


def config_message(config: Config) -> ConfigMessage:
    """What every worker is told when it is READY."""
    sup = config.supervisor
    return ConfigMessage(
        heartbeat_interval_s=sup.heartbeat_interval_s,
        liveness=sup.liveness,
        limits=Limits(max_input_bytes=config.jobs.max_input_bytes, preview_lines=config.jobs.preview_lines),
        pipeline=config.jobs.pipeline,
        skills=[SkillRule(**r.model_dump()) for r in config.skills],
        skill_paths=[str(p.expanduser().absolute()) for p in config.jobs.skill_paths],
        grep=[GrepRule(**g.model_dump()) for g in config.grep],
        notes=NoteSettings(
            content_max_bytes=config.notes.content_max_bytes,
            related_listed=config.notes.related_listed,
            grep_context_lines=config.notes.grep_context_lines,
            grep_max_matches=config.notes.grep_max_matches,
            grep_max_bytes=config.notes.grep_max_bytes,
            context_cache_s=config.notes.context_cache_s,
        ),
    )


def restart_policy(config: Config) -> RestartPolicy:
    s = config.supervisor
    return RestartPolicy(
        initial=s.backoff_initial_s,
        cap=s.backoff_max_s,
        stable_after=s.stable_uptime_s,
        max_restarts=s.max_restarts,
        window=s.restart_window_s,
        cooldown=s.failed_cooldown_s,
        cooldown_cap=s.failed_cooldown_max_s,
    )


def breaker_policy(config: Config) -> BreakerPolicy:
    return BreakerPolicy(**config.breaker.model_dump())  # the same fields, by design


def fleet_policy(config: Config) -> FleetPolicy:
    return FleetPolicy(**config.fleet.model_dump())
