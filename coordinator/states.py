"""Worker slot and job states, with ready-made groups. No dependencies, so every module can import it.

Slot states use supervisord's vocabulary, which operators already know:

    starting ─► ready ⇄ busy ─► stopping ─► stopped
        │         │      │
        └─────────┴──────┴──► backoff ─► starting ...   (after a death, with exponential delay)
                                 └──────► failed ─► starting ...  (too many restarts; one trial start
                                                                   after a cool-down, or by an operator)

A busy worker with a `plan` (recycle, operator restart, scale down) finishes its job, then is asked to exit
(stopping); `ob-ctl workers` shows it as `draining` meanwhile.

Each slot also has a circuit breaker (`coordinator.breaker`) that decides whether it may be given jobs:

    closed ──► open ──► half_open ──► closed   (too many infrastructure failures; recovery time passed;
               ▲           │                     the one probe job succeeded)
               └───────────┘                   (the probe failed: open again, with a fresh timer)
    open / half_open ──► closed                (reset by an operator)
"""

from __future__ import annotations

from enum import StrEnum


class SlotState(StrEnum):
    """Where a worker slot is in its life."""

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


#: A process is (or should be) alive in these states.
RUNNING_STATES = frozenset({SlotState.STARTING, SlotState.READY, SlotState.BUSY, SlotState.STOPPING})
#: These count against the service's health.
BAD_STATES = frozenset({SlotState.BACKOFF, SlotState.FAILED})


class JobState(StrEnum):
    """A job is one version of one file."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"


TERMINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.QUARANTINED})
ALL_JOB_STATES = tuple(JobState)


class BreakerState(StrEnum):
    """Whether a slot's circuit breaker lets jobs through: yes, no, or one probe job at a time."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
