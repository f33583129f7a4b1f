"""`.error` sidecars: a markdown file where a failed file's note would have been, saying why it has none.

When a dropped file ends failed or quarantined (its ERROR record written), `<name>.error` is written next to
where `<name>.obs.md` would have been, or as `notes.sidecar_dir/<bucket>/<relpath>.error` when that is set:
the file, its path, bucket and relative path, when, the error (category, severity, name, code, message,
stack), the attempts and the record's file name, and for a text file its first `notes.sidecar_content_bytes`.

The content is the only part a hostile file controls at length, so it is pasted only when that is harmless:
never for binary files, quarantined files (they crashed or hung a sandboxed worker; the coordinator is not
sandboxed), anything but a regular file, or a file that changed since it failed; it is read without following
symlinks or blocking, at most the cap + 1 bytes, and fenced so it cannot close its fence. Cancelled jobs and
`rules` jobs get no sidecar. A later version of the file that succeeds removes it. Nothing here ever raises
into `coordinator.outcomes`: a sidecar that cannot be written is logged and counted, and the job ends anyway.

A sidecar is never written inside a bucket (it would be picked up as a new file there) unless
`notes.sidecar_dir` was set to a place inside that bucket.
"""

from __future__ import annotations

import codecs
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from coordinator.config import Config
from coordinator.errors_table import severity_of
from coordinator.jobs import Job
from coordinator.states import JobState

SUFFIX = ".error"
NOTE_SUFFIX = ".obs.md"
#: A NUL in this many first bytes makes a file binary (the same sniff the usual tools use).
BINARY_SNIFF_BYTES = 8 * 1024
#: Jobs that are not one dropped file (a bad `.bucket-include`): they have no place for a sidecar.
NO_SIDECAR_KINDS = frozenset({"rules"})
NO_SIDECAR_CATEGORIES = frozenset({"Cancelled"})  # an operator's decision, not the file's failure

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: In one line: control characters and line separators (→ space), lone surrogates (→ U+FFFD).
_LINE_UNSAFE = re.compile("[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_BACKTICKS = re.compile("`+")


@dataclass(frozen=True, slots=True)
class Content:
    """What of the failed file a sidecar shows: its text (maybe cut), or why nothing is shown."""

    text: str | None = None
    size: int = 0  # the file's size in bytes
    shown: int = 0  # bytes of it shown
    why_not: str = ""

    @property
    def truncated(self) -> bool:
        return self.text is not None and self.shown < self.size


# -- rendering (pure) ------------------------------------------------------------------------------------


def render_sidecar(
    job: Job,
    state: JobState,
    *,
    category: str,
    message: str,
    error_name: str = "Error",
    code: str | None = None,
    stack: str | None = None,
    component: str | None = None,
    record: str | None = None,
    when: float,
    content: Content,
) -> str:
    """The full text of one sidecar. Every string that came from the file or the worker is either an
    inline code span or a fenced block that it cannot close, so nothing in it becomes markdown."""
    name = os.path.basename(job.relpath) or os.path.basename(job.path) or job.relpath
    error = code_span(error_name) + (f" (code {code_span(code)})" if code else "")
    rows = [
        ("File", code_span(name)),
        ("Path", code_span(job.path)),
        ("Bucket", code_span(job.bucket)),
        ("Relative path", code_span(job.relpath)),
        ("Time", _utc_iso(when)),
        ("State", state.value),
        ("Category", code_span(category)),
        ("Severity", severity_of(category)),
        ("Error", error),
        ("Component", code_span(component or "worker")),
        ("Attempts", f"{job.attempts} (worker deaths: {job.kills})"),
        ("Record", code_span(record) if record else "not written"),
    ]
    lines = [f"# Error: {code_span(name)}", ""]
    lines.append(f"This file has no note: it ended {state.value}. Its JSON record is named below.")
    lines += ["", "| Field | Value |", "| --- | --- |"]
    lines += [f"| {key} | {value.replace('|', chr(92) + '|')} |" for key, value in rows]
    lines += ["", "## Message", "", *fenced(message or "(no message)")]
    if stack:
        lines += ["", "## Stack", "", *fenced(stack)]
    lines += ["", "## Content", ""]
    if content.text is None:
        lines.append(f"Not shown: {_line(content.why_not)}.")
    elif not content.text:
        lines.append("Empty file.")
    else:
        lines += fenced(content.text)
        if content.truncated:
            lines += ["", f"*truncated: first {content.shown} of {content.size} bytes*"]
    return "\n".join(lines) + "\n"


def fenced(text: str, language: str = "text") -> list[str]:
    """`text` as a fenced code block whose fence is longer than any backtick run inside it, so the text
    cannot end the block early and write markdown of its own."""
    text = _SURROGATES.sub("\ufffd", text)
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text[:-1] if text.endswith("\n") else text, fence]


def code_span(text: str) -> str:
    """`text` as one inline code span that it cannot close early."""
    safe = _line(text)
    longest = max((len(run) for run in _BACKTICKS.findall(safe)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if safe.startswith("`") or safe.endswith("`") or not safe.strip() else ""
    return f"{fence}{pad}{safe}{pad}{fence}"


def _line(text: str) -> str:
    return _LINE_UNSAFE.sub(lambda m: "\ufffd" if m.group() >= "\ud800" else " ", text)


def _utc_iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the failed file's content ---------------------------------------------------------------------------


def content_of(job: Job, state: JobState, category: str, limit: int) -> Content:
    """What the sidecar of `job` may show of its file: the policy first, then a safe read."""
    if category in NO_SIDECAR_CATEGORIES:
        return Content(why_not="the job was cancelled")
    if state is JobState.QUARANTINED:
        # It crashed or hung a sandboxed worker; the coordinator does not read it.
        return Content(why_not="the file was quarantined, and quarantined files are never read")
    if job.kind != "file":
        return Content(why_not=f"a {job.kind} is never opened")
    if limit <= 0:
        return Content(why_not="notes.sidecar_content_bytes is 0")
    _, _, size, mtime_ns, inode = job.key
    return read_text(job.path, limit, expect=(size, mtime_ns, inode))


def read_text(path: str, limit: int, expect: tuple[int, int, int] | None = None) -> Content:
    """The first `limit` bytes of `path` as text, if it is a regular text file (and still the `expect`ed
    version: size, mtime_ns, inode). Opened without following a symlink or blocking on a FIFO; at most
    `limit + 1` bytes are read (the one more says whether it was cut)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        return Content(why_not=f"the file could not be opened ({exc.strerror or exc})")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Content(why_not="it is not a regular file")
        if expect is not None and (st.st_size, st.st_mtime_ns, st.st_ino) != expect:
            return Content(why_not="the file changed since this version failed")
        data = _read_at_most(fd, limit + 1)
    except OSError as exc:
        return Content(why_not=f"the file could not be read ({exc.strerror or exc})")
    finally:
        os.close(fd)
    size = max(st.st_size, len(data))
    cut = len(data) > limit
    data = data[:limit]
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return Content(size=size, why_not="binary file")
    try:
        # Incremental: a cut through a multi-byte character drops that character, not the whole text.
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
    except UnicodeDecodeError:
        return Content(size=size, why_not="binary file (not UTF-8 text)")
    return Content(text=text, size=size, shown=len(text.encode("utf-8")))


def _read_at_most(fd: int, n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = os.read(fd, n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# -- where a sidecar goes --------------------------------------------------------------------------------


def sidecar_path(job: Job, sidecar_dir: str | None) -> str:
    """`<note dir>/<name>.error`, or `<sidecar_dir>/<bucket>/<relpath>.error` (the bucket's name keeps two
    buckets' `a.txt` apart, and does not change when buckets are added, so a later success finds it)."""
    if sidecar_dir is None:
        out = job.output_path
        return (out[: -len(NOTE_SUFFIX)] if out.endswith(NOTE_SUFFIX) else out) + SUFFIX
    return os.path.join(sidecar_dir, job.bucket, job.relpath) + SUFFIX


def inside_bucket(real_path: str, roots: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The (bucket name, real root) `real_path` lies in, or None. Roots end with a separator."""
    for name, root in roots:
        if real_path.startswith(root):
            return name, root
    return None


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the new one: a hidden temp file beside it
    (short name: `<name>.error` may already be near NAME_MAX), created without following a symlink, then
    renamed over it (a rename replaces a symlink, never follows it)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{secrets.token_hex(6)}{SUFFIX}.tmp")
    data = text.encode("utf-8", "replace")
    fd = os.open(temp, _WRITE_FLAGS, 0o666)  # 0666 & umask, like the notes themselves
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass  # it is a dot file the next attempt does not reuse; nothing better to do
        raise


class Sidecars:
    """Writes and removes `.error` sidecars for `coordinator.outcomes`. Its methods never raise: a sidecar
    is a courtesy to people, the ERROR record is what counts, so a failure is logged and counted."""

    def __init__(self) -> None:
        self.written = 0
        self.removed = 0
        #: Sidecars that could not be written or removed (each one logged): for the telemetry.
        self.failures = 0
        self._config: Config | None = None
        self._sidecar_dir: str | None = None
        self._roots: list[tuple[str, str]] = []  # (bucket name, real root + sep) where no sidecar goes
        self._bases: dict[str, tuple[str, str]] = {}  # bucket → (its sidecars' dir prefix, that resolved)
        self._common: tuple[str, str] | None = None  # the same for every bucket, with a sidecar_dir
        self._refused: set[str] = set()  # buckets whose refusal was logged

    def failed(self, config: Config, job: Job, state: JobState, error: Mapping[str, Any]) -> None:
        """`job` just ended `state` with an ERROR record of these fields (`RecordWriter.error`'s)."""
        category = str(error.get("category") or "")
        if (
            not config.notes.error_sidecars
            or job.kind in NO_SIDECAR_KINDS
            or category in NO_SIDECAR_CATEGORIES
        ):
            return
        try:
            path = self.path_for(config, job)
            if path is None:
                return
            text = render_sidecar(
                job,
                state,
                category=category,
                message=str(error.get("message") or ""),
                error_name=str(error.get("name") or "Error"),
                code=error.get("code"),
                stack=error.get("stack"),
                component=error.get("component"),
                record=job.record,
                when=job.finished_at or time.time(),
                content=content_of(job, state, category, config.notes.sidecar_content_bytes),
            )
            write_atomic(path, text)
            self.written += 1
        except Exception as exc:  # never the job's ending: see the class
            self.failures += 1
            logger.warning("job {} ({}): its .error sidecar was not written: {}", job.id, job.relpath, exc)

    def succeeded(self, config: Config, job: Job) -> None:
        """A version of the file got its note: remove the sidecar an earlier version's failure left.

        On the hot path, so it is one `unlink` that usually fails with ENOENT (about 2 µs; a record costs
        40-110 µs), after string work and cached lookups. Durable across restarts, unlike remembering in
        memory which files have sidecars, and cheaper than asking the queue about earlier versions."""
        if not config.notes.error_sidecars or job.kind != "file":
            return
        try:
            path = self.path_for(config, job)
            if path is None:
                return
            os.unlink(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            self.failures += 1
            logger.warning(
                "job {} ({}): its stale .error sidecar was not removed: {}", job.id, job.relpath, exc
            )
            return
        self.removed += 1
        logger.info("job {} ({}): removed the .error sidecar of an earlier version", job.id, job.relpath)

    def path_for(self, config: Config, job: Job) -> str | None:
        """Where `job`'s sidecar goes, or None where none may go (inside a bucket, logged once a bucket)."""
        if config is not self._config:
            self._learn(config)
        path = sidecar_path(job, self._sidecar_dir)
        found = inside_bucket(self._resolved(job.bucket, path), self._roots)
        if found is None:
            return path
        if job.bucket not in self._refused:
            self._refused.add(job.bucket)
            logger.warning(
                "bucket {}: no .error sidecars are written, as they would go to {}, inside bucket {} ({}), "
                "where they would be taken for new files; set notes.sidecar_dir to put them elsewhere",
                job.bucket,
                os.path.dirname(path),
                found[0],
                found[1].rstrip(os.sep),
            )
        return None

    def _learn(self, config: Config) -> None:
        """Cache what every call needs from a (new) config: resolving paths costs a syscall per component."""
        self._config = config
        given = config.notes.sidecar_dir
        chosen: str | None = None
        if given is None:
            self._sidecar_dir, self._common = None, None
            self._bases = {}
            for b in config.buckets:
                base = f"{config.bucket_output(b)}{os.sep}"
                self._bases[b.name] = (base, _real_dir(base))
        else:
            self._sidecar_dir = os.path.abspath(given.expanduser())
            chosen = _real_dir(self._sidecar_dir)
            self._common = (self._sidecar_dir + os.sep, chosen)  # every bucket's sidecars hang from it
        roots = [(b.name, _real_dir(os.path.abspath(b.path.expanduser()))) for b in config.buckets]
        # A sidecar_dir set to a place inside a bucket is the operator's explicit choice: allowed there.
        self._roots = [(name, root) for name, root in roots if chosen is None or not chosen.startswith(root)]

    def _resolved(self, bucket: str, path: str) -> str:
        """`path` with symlinks in its base dir resolved, from the cache when it lies under the bucket's
        known base (the usual case), else by asking the filesystem."""
        known = self._common or self._bases.get(bucket)
        if known is not None and path.startswith(known[0]):
            return known[1] + path[len(known[0]) :]
        return _real_dir(os.path.dirname(path)) + os.path.basename(path)


def _real_dir(path: str) -> str:
    """`path` with symlinks resolved (as far as it exists), ending with a separator."""
    real = os.path.realpath(path)
    return real if real.endswith(os.sep) else real + os.sep
