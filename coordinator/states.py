"""Worker slot and job states, with ready-made groups. No dependencies, so every module can import it.

Slot states use supervisord's vocabulary, which operators already know:

    starting ─► ready ⇄ busy ─► stopping ─► stopped
        │         │      │
        └─────────┴──────┴──► backoff ─► starting ...   (after a death, with exponential delay)
                                 └──────► failed         (too many restarts in the window)
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
