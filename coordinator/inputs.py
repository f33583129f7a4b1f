"""What happens to an input file after its job ends: kept, moved to `processed/`, deleted, or moved to
`quarantine/` (config `jobs.after_success`, `jobs.quarantine_move`).

A file is only touched if it is still the version the job processed (same size, mtime and inode): a newer
version written meanwhile is a new job and must not be moved away under it. Failures are logged, never
raised: the job's record is already written and stays true.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from loguru import logger

from coordinator.jobs import Job


def still_this_version(job: Job) -> bool:
    """Whether the file at job.path is exactly the version the job was about."""
    try:
        st = os.lstat(job.path)
    except OSError:
        return False
    _, _, size, mtime_ns, inode = job.key
    return (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime_ns, inode)


def move_input(job: Job, target_root: Path) -> Path | None:
    """Move the input to `<target_root>/<bucket>/<relpath>`; the new path, or None if it stayed."""
    if not still_this_version(job):
        return None
    target = target_root / job.bucket / job.relpath
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(job.path, target)  # same filesystem: keeps inode and mtime
        except OSError:
            shutil.move(str(job.path), str(target))
    except OSError as exc:
        logger.error("could not move {} to {}: {}", job.path, target, exc)
        return None
    return target


def delete_input(job: Job) -> bool:
    """Delete the input; whether it was deleted."""
    if not still_this_version(job):
        return False
    try:
        os.unlink(job.path)
        return True
    except OSError as exc:
        logger.error("could not delete {}: {}", job.path, exc)
        return False
