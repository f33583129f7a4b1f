"""Names of a note's files that both sides know.

A worker writes a note through a temp file beside it, named for its job, so that a worker killed in the
middle of a write leaves a file the job's retry overwrites instead of one that stays forever. A job that
is never retried (quarantined after its worker deaths) would leave it for good; the coordinator removes it
then, and needs the same name for that.
"""

from __future__ import annotations

import os


def job_temp_name(note_name: str, job_id: str) -> str:
    """The temp name of the note `note_name` while job `job_id` (its wire id) writes it: hidden (starting
    with "."), so folder watchers and Obsidian ignore it."""
    return f".{note_name}.job{job_id}.tmp"


def job_temp_path(note_path: str, job_id: str) -> str:
    """`job_temp_name` beside the note at `note_path`."""
    directory, name = os.path.split(note_path)
    return os.path.join(directory, job_temp_name(name, job_id))
