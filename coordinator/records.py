"""SUCCESS and ERROR record files: one JSON file per terminal job, written atomically, never overwritten.

Names are `SUCCESS-<YYYY-MM-DD-HHMMSS>-<seq>.json` / `ERROR-...json`. The record is written to a hidden temp
file and hard-linked into place, so a reader never sees half a record and an existing one is never replaced
(the link fails with EEXIST and the next sequence number is tried).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.jobs import Job

#: Severity of each error category (the seed design's table, plus what the supervisor sees).
SEVERITY = {
    "Configuration": "critical",
    "System": "critical",
    "WorkerCrash": "high",
    "Timeout": "high",
    "ResourceLimit": "high",
    "SandboxViolation": "high",
    "Quarantined": "high",
    "ExternalTool": "medium",
    "FileAccess": "medium",
    "FileContent": "low",
    "PatternMatching": "low",
    "Protocol": "medium",
}


class RecordWriter:
    """Writes terminal records into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count(1)
        self.written = 0

    def _write(self, prefix: str, payload: dict[str, Any]) -> str:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M%S")
        data = json.dumps(payload, indent=2, default=str).encode()
        tmp = self.directory / f".{prefix}-{os.getpid()}-{time.monotonic_ns()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            while True:
                name = f"{prefix}-{stamp}-{next(self._seq):06d}.json"
                try:
                    os.link(tmp, self.directory / name)
                    break
                except FileExistsError:
                    continue
        finally:
            tmp.unlink(missing_ok=True)
        self.written += 1
        return name

    def success(self, job: Job, *, result: dict[str, Any], duration_s: float) -> str:
        """Record a job that produced its note."""
        facts = result["facts"]
        return self._write(
            "SUCCESS",
            {
                "recordId": job.id,
                "jobId": job.id,
                "timestamp": _now(),
                "filePath": str(job.path),
                "watchDir": job.bucket,
                "relativePath": job.relpath,
                "outputPath": result["output_path"],
                "context": {
                    "fileType": facts["file_type"],
                    "mime": facts["mime"],
                    "isText": facts["is_text"],
                },
                "processing": {
                    "duration": round(duration_s, 6),
                    "bytesProcessed": facts["size"],
                    "fileType": facts["file_type"],
                    "worker": job.worker,
                    "attempts": job.attempts,
                },
                "metadata": {
                    "fileSize": facts["size"],
                    "encoding": facts.get("encoding"),
                    "sha256": facts["sha256"],
                    "lineCount": facts.get("line_count"),
                },
            },
        )

    def error(
        self,
        job: Job,
        *,
        category: str,
        message: str,
        name: str = "Error",
        code: str | None = None,
        stack: str | None = None,
        component: str = "worker",
        operation: str = "process_file",
        recovery: dict[str, Any] | None = None,
    ) -> str:
        """Record a job that ended without a note."""
        return self._write(
            "ERROR",
            {
                "errorId": job.id,
                "jobId": job.id,
                "timestamp": _now(),
                "severity": SEVERITY.get(category, "medium"),
                "category": category,
                "component": component,
                "filePath": str(job.path),
                "watchDir": job.bucket,
                "relativePath": job.relpath,
                "operation": operation,
                "error": {"name": name, "message": message, "code": code, "stack": stack},
                "context": {"kind": job.kind, "worker": job.worker, "lastError": job.last_error},
                "recovery": recovery or {"attempted": False, "fallback": None, "successful": False},
                "attempts": job.attempts,
            },
        )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def format_exception(exc: BaseException) -> str:
    """A traceback as text, for a record's `stack`."""
    return "".join(traceback.format_exception(exc))
