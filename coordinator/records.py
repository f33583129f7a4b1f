"""SUCCESS and ERROR record files: one JSON file per terminal job, written atomically, never overwritten.

Names are `SUCCESS-<YYYY-MM-DD-HHMMSS>-<job id>.json` / `ERROR-...json`: the sequence number is the job's
id, so a record file names its job, and start-up recovery can match a record written just before a crash
to the job whose terminal state was not committed yet (`coordinator.recovery`). The record is written to an
unnamed file (O_TMPFILE; a hidden temp file where that is not supported) and hard-linked into place: a
reader never sees half a record, and an existing record is never replaced (a second record of the same job
in the same second, after an operator's retry, gets `-2`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from coordinator.errors_table import CATEGORIES, severity_of
from coordinator.jobs import Job
from coordinator.record_schema import problems
from coordinator.states import JobState

#: Severity of each error category (kept for its importers; the table itself, with what each category means
#: and whether it is retryable, is `coordinator.errors_table`).
SEVERITY = {name: row.severity for name, row in CATEGORIES.items()}

#: Linux's unnamed-file flag; 0 elsewhere, where records always go through a named temp file.
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
#: What open(O_TMPFILE) fails with where the filesystem (or an old kernel) does not support it.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})

NAME_RE = re.compile(r"^(SUCCESS|ERROR)-(\d{4}-\d{2}-\d{2}-\d{6})-(\d+)(?:-\d+)?\.json$")


@dataclass(frozen=True, slots=True)
class WrittenRecord:
    """A record file on disk, and what the SQLite index keeps of it: for an ERROR record what the error
    tracker counts (category, severity, component), for a SUCCESS record what `ob-ctl report` sums
    (duration, bytes, skill, file type)."""

    name: str
    kind: str  # SUCCESS | ERROR
    timestamp: float
    category: str | None = None
    severity: str | None = None
    message: str | None = None
    component: str | None = None
    duration_s: float | None = None
    bytes: int | None = None
    skill: str | None = None
    file_type: str | None = None

    def index_row(self, job: Job, state: JobState) -> tuple[Any, ...]:
        """The row for the `records` table, in `INDEX_COLUMNS` order."""
        return (
            self.name, job.id, self.kind, state.value, self.category, self.severity,
            job.bucket, job.relpath, self.timestamp, self.message, self.component,
            self.duration_s, self.bytes, self.skill, self.file_type,
        )  # fmt: skip

    @classmethod
    def from_file(cls, path: Path) -> tuple[WrittenRecord, JobState]:
        """Read a record back (recovery): the record, with the index's fields taken from its JSON, and the
        job state it recorded."""
        data = json.loads(path.read_text())
        kind = "SUCCESS" if path.name.startswith("SUCCESS") else "ERROR"
        state = JobState(data.get("state", "done" if kind == "SUCCESS" else "failed"))
        ts = datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00")).timestamp()
        if kind == "ERROR":
            message = (data.get("error") or {}).get("message")
            category = data.get("category")
            severity = data.get("severity") or severity_of(category)
            return cls(path.name, kind, ts, category, severity, message, data.get("component")), state
        processing = data.get("processing") or {}
        record = cls(
            path.name,
            kind,
            ts,
            duration_s=processing.get("duration"),
            bytes=processing.get("bytesProcessed"),
            skill=(data.get("context") or {}).get("skill"),
            file_type=processing.get("fileType"),
        )
        return record, state


#: The `records` columns `WrittenRecord.index_row` fills; the rest (superseded, resolved, resolved_at) keep
#: their defaults until an operator retries the job or resolves the error.
INDEX_COLUMNS = (
    "name", "job_id", "kind", "state", "category", "severity", "bucket", "relpath", "timestamp", "message",
    "component", "duration_s", "bytes", "skill", "file_type",
)  # fmt: skip


def job_id_of(name: str) -> int | None:
    """The job id a record file name carries, or None for a name that is not a record."""
    m = NAME_RE.match(name)
    return int(m.group(3)) if m else None


class RecordWriter:
    """Writes terminal records into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.written = 0
        #: Records that failed their schema (`coordinator.record_schema`): each one is a bug, logged and
        #: written anyway with a `validation` block, never dropped.
        self.invalid = 0
        self._dir = os.fspath(directory) + os.sep  # string paths: pathlib costs more than the I/O here
        self._second = -1
        self._stamp = ""
        self._tmp_seq = 0
        self._pid = os.getpid()  # not a call per record: getpid() is a system call
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._anonymous = _O_TMPFILE != 0  # until the filesystem says it cannot

    def _stamps(self, now: float) -> tuple[str, str]:
        """(name stamp, ISO timestamp) for `now`; the name part is cached per second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d-%H%M%S")
        iso = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return self._stamp, iso

    def _write(self, prefix: str, job: Job, payload: dict[str, Any]) -> tuple[str, float]:
        now = time.time()
        stamp, payload["timestamp"] = self._stamps(now)
        found = problems(prefix, payload)
        if found:
            self._flag_invalid(prefix, job, payload, found)
        # Compact: the indenting encoder is pure Python and cost ~100 µs a record on the hot path.
        data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        name = self._publish_anonymous(data, _names(prefix, stamp, job.id)) if self._anonymous else None
        if name is None:
            name = self._publish_named(prefix, data, _names(prefix, stamp, job.id))
        self.written += 1
        return name, now

    def _flag_invalid(self, prefix: str, job: Job, payload: dict[str, Any], found: list[str]) -> None:
        """A record that fails its schema is a bug in the code that built it: say so loudly and count it,
        but write it all the same (with what is wrong), since a record is never silently dropped."""
        self.invalid += 1
        payload["validation"] = {"ok": False, "problems": found}
        logger.error(
            "BUG: the {} record of job {} fails its schema and is written flagged: {}",
            prefix,
            job.id,
            "; ".join(found),
        )

    def _publish_anonymous(self, data: bytes, names: Iterator[str]) -> str | None:
        """Write `data` to an unnamed file (O_TMPFILE) and link it under the first free name. Nothing is
        left behind if we die half-way, and it is one directory change instead of three (create, link and
        unlink a named temp file). None where the filesystem or kernel cannot do it."""
        try:
            fd = os.open(self._dir, os.O_WRONLY | _O_TMPFILE | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise
            self._anonymous = False
            return None
        try:
            _write_all(fd, data)
            for name in names:
                try:
                    # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N: the documented way to name an O_TMPFILE.
                    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=self._dir_fd, follow_symlinks=True)
                    return name
                except FileExistsError:
                    continue
                except FileNotFoundError:  # no /proc here
                    self._anonymous = False
                    return None
            raise FileExistsError(f"no free record name in {self._dir} for {name}")
        finally:
            os.close(fd)

    def _publish_named(self, prefix: str, data: bytes, names: Iterator[str]) -> str:
        """Write `data` to a hidden temp file and hard-link it under the first free name."""
        self._tmp_seq += 1
        tmp = f"{self._dir}.{prefix}-{self._pid}-{self._tmp_seq}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        try:
            for name in names:
                try:
                    os.link(tmp, self._dir + name)
                    return name
                except FileExistsError:
                    continue
            raise FileExistsError(f"no free record name in {self._dir} for {name}")
        finally:
            os.unlink(tmp)

    def close(self) -> None:
        """Close the directory handle."""
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def success(self, job: Job, *, result: dict[str, Any], duration_s: float) -> WrittenRecord:
        """Record a job that produced its note."""
        facts = result["facts"] or {"size": job.key[2]}  # the no-op pipeline learns nothing
        name, ts = self._write(
            "SUCCESS",
            job,
            {
                "recordId": f"{job.id}",
                "jobId": job.id,
                "state": JobState.DONE.value,
                "timestamp": None,
                "filePath": str(job.path),
                "watchDir": job.bucket,
                "relativePath": job.relpath,
                "outputPath": result["output_path"],
                "context": {
                    "fileType": facts.get("file_type"),
                    "mime": facts.get("mime"),
                    "isText": facts.get("is_text"),
                    "skill": facts.get("skill"),
                    "details": facts.get("details") or {},
                    "grepMatches": [_grep_match(m) for m in facts.get("grep_matches") or []],
                    "bucketInclude": _bucket_include(facts.get("context")),
                    "version": _version(job),
                },
                "processing": {
                    "duration": round(duration_s, 6),
                    "bytesProcessed": facts.get("size"),
                    "fileType": facts.get("file_type"),
                    "worker": job.worker,
                    "attempts": job.attempts,
                },
                "recovery": _recovery(facts.get("recovery")),
                "metadata": {
                    "fileSize": facts.get("size"),
                    "encoding": facts.get("encoding"),
                    "sha256": facts.get("sha256"),
                    "lineCount": facts.get("line_count"),
                },
            },
        )
        return WrittenRecord(
            name,
            "SUCCESS",
            ts,
            duration_s=duration_s,
            bytes=facts.get("size"),
            skill=facts.get("skill"),
            file_type=facts.get("file_type"),
        )

    def error(
        self,
        job: Job,
        *,
        state: JobState,
        category: str,
        message: str,
        name: str = "Error",
        code: str | None = None,
        stack: str | None = None,
        component: str = "worker",
        operation: str = "process_file",
        recovery: dict[str, Any] | None = None,
    ) -> WrittenRecord:
        """Record a job that ended without a note (`state` is failed or quarantined)."""
        severity = severity_of(category)
        record_name, ts = self._write(
            "ERROR",
            job,
            {
                "errorId": f"{job.id}",
                "jobId": job.id,
                "state": state.value,
                "timestamp": None,
                "severity": severity,
                "category": category,
                "component": component,
                "filePath": str(job.path),
                "watchDir": job.bucket,
                "relativePath": job.relpath,
                "operation": operation,
                "error": {"name": name, "message": message, "code": code, "stack": stack},
                "context": error_context(job),
                "recovery": recovery or {"attempted": False, "fallback": None, "successful": False},
                "attempts": job.attempts,
            },
        )
        return WrittenRecord(record_name, "ERROR", ts, category, severity, str(message)[:500], component)


def error_context(job: Job) -> dict[str, Any]:
    """An ERROR record's `context`: which worker held the job, how often it was tried and killed a worker,
    the error before this one, and the file version it was about. Every ERROR record has all of these keys,
    whichever component ended the job."""
    return {
        "kind": job.kind,
        "worker": job.worker,
        "attempts": job.attempts,
        "kills": job.kills,
        "lastError": job.last_error,
        "version": _version(job),
    }


def _grep_match(match: Any) -> dict[str, Any]:
    # A pydantic GrepMatch from a RESULT, or a plain dict (recovery, tests).
    get = match.get if isinstance(match, dict) else lambda key: getattr(match, key, None)
    out = {"rule": get("rule"), "line": get("line"), "text": get("text")}
    if get("path") is not None:
        out["path"] = get("path")
    return out


def _bucket_include(context: Any) -> dict[str, Any] | None:
    """What the note's `.bucket-include` context held (None: no rule file applied)."""
    if context is None:
        return None
    get = context.get if isinstance(context, dict) else lambda key: getattr(context, key, None)
    return {
        "relatedFiles": get("related_files"),
        "relatedBytes": get("related_bytes"),
        "grepDirs": get("grep_dirs"),
        "grepMatches": get("grep_matches"),
        "grepTool": get("grep_tool"),
        "scanned": get("scanned"),
        "problems": list(get("problems") or []),
    }


def _recovery(recovery: Any) -> dict[str, Any]:
    """A SUCCESS record's `recovery`: what the worker fell back to, if anything."""
    if recovery is None:
        return {"attempted": False, "fallback": None, "successful": True}
    get = recovery.get if isinstance(recovery, dict) else lambda key: getattr(recovery, key, None)
    return {"attempted": True, "fallback": get("fallback"), "successful": True, "reason": get("reason")}


def _names(prefix: str, stamp: str, job_id: int) -> Iterator[str]:
    """A record's name, then the names a second (third, ...) record of the job in the same second takes."""
    yield f"{prefix}-{stamp}-{job_id:06d}.json"
    for n in range(2, 1000):
        yield f"{prefix}-{stamp}-{job_id:06d}-{n}.json"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a write near a full disk may be short
        view = view[os.write(fd, view) :]


def _version(job: Job) -> dict[str, Any]:
    _, _, size, mtime_ns, inode = job.key
    return {"size": size, "mtimeNs": mtime_ns, "inode": inode}


def format_exception(exc: BaseException) -> str:
    """A traceback as text, for a record's `stack`."""
    return "".join(traceback.format_exception(exc))
