"""One job, start to finish: open the input safely, learn its facts, render its note, write it atomically."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

from protocol.messages import FileFacts
from worker.pipeline.detect import build_facts
from worker.pipeline.errors import JobError, errno_name
from worker.pipeline.note import render_note, write_atomic
from worker.pipeline.safe_open import Version, open_regular

# When the note cannot be written the disk said no (full, read-only, permissions, a missing directory):
# that clears up when an operator acts, so the coordinator retries with backoff. Only a name the output
# filesystem can never hold is final.
_FINAL_OUTPUT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL})


def process_file(
    path: str,
    output_path: str,
    *,
    bucket: str,
    relpath: str,
    worker: str,
    max_input_bytes: int,
    preview_lines: int,
    expect: Version | None = None,
    job_id: str | None = None,
) -> FileFacts:
    """Turn the file at `path` into a note at `output_path` and return what was learned about it.

    Raises `JobError`: FileAccess / FileContent for the input (see `open_regular`), System when the note
    cannot be written.
    """
    fd, st = open_regular(path, max_input_bytes, expect)
    try:
        facts, preview = build_facts(fd, st, preview_lines=preview_lines, name=relpath or path)
    finally:
        os.close(fd)

    note = render_note(
        source_path=path,
        bucket=bucket,
        relpath=relpath,
        facts=facts,
        preview=preview,
        processed_at=datetime.now(UTC),
        worker=worker,
    )
    try:
        write_atomic(Path(output_path), note, owner=job_id)
    except OSError as exc:
        raise JobError(
            "System",
            f"cannot write note {output_path}: {exc.strerror or exc}",
            code=errno_name(exc),
            retryable=exc.errno not in _FINAL_OUTPUT_ERRNOS,
        ) from exc
    return facts
