"""The watcher: filesystem activity under the buckets in, `Sighting`s of files that are ready out.

Threads. watchdog's observer threads only append `(event kind, path, dest path)` to a deque and call the
loop's `wake()` (at most once per drain); they never touch the filesystem or the watcher's state. Everything
else (stat, scans, settle timers, filtering) runs in the coordinator's loop, inside `poll()`.

When a file is ready (emitted as a `Sighting`):

- closed after writing (`FileClosedEvent`), or renamed to its name inside a bucket (`FileMovedEvent`, e.g.
  `x.tmp -> x.csv`): lstat it and emit at once, no debounce;
- renamed in from outside every bucket: inotify reports an unmatched IN_MOVED_TO, which the observer (with
  `generate_full_events`) passes on as a move with no source: emit at once, like any rename;
- seen only as created, or found by a scan: emit at
  once if its mtime is already `settle_s` old (any write moves mtime to now, so nobody is writing it), else
  once size, mtime_ns and inode have stayed the same for `settle_s` (re-stat at each check);
- a symlink, FIFO, device or socket: emit at once with its `kind` (there is no content to settle, and the
  coordinator records it as a FileAccess error); it is never opened or followed.

Directories are never emitted, they are walked: a directory created in or moved into a bucket is scanned
(files written into a brand-new directory are reported as created, not closed). A path gone by the time it
is stat'ed is dropped (counted `vanished`): the file left before we took it.

Which names count is decided in `coordinator.names` (temp names and excluded directories are `ignored`,
bucket `patterns`/`ignore` globs make a file `rejected`).

Lost events. The kernel queue overflows under bursts, watchdog then only logs "Inotify queue overflowed" on
the `watchdog.observers.inotify_c` logger, and nothing at all is heard from NFS/CIFS writers (use
`polling=True` there). So: the observer starts first, then every bucket is scanned; every bucket is scanned
again every `rescan_interval_s`, and at once when that log line appears (`rescans_overflow`). A full scan
also re-watches a bucket root that was deleted or replaced and has come back. Re-sighting the same version of
a file is harmless: `Sighting.key` is the job queue's idempotency key. Within one `poll()` each key appears
once, and a version the queue already knows (`known`) is not emitted again.

Buckets come and go at run time (`add_bucket`, `remove_bucket`, called in the loop's thread like `poll()`).
Only that one root's watch is scheduled or unscheduled on the running observer, so the other buckets lose
no events. An added bucket is scanned in full at the next `poll()`. Nothing under a removed bucket becomes a
sighting: its queued scans are dropped, events still in the inbox find no bucket and are dropped in `poll()`,
and a settling file is looked at again under its current owner (none) when its timer comes up. Buckets may
nest, and a path belongs to the deepest root holding it: an added inner bucket takes its directory over
from the outer one (whose queued walks there are dropped), a removed one hands it back (which scans it).

Near 500 lines: the event and scan paths share the ready rules above and are read together; names and
bucket ownership (`Buckets`), scanning, settling and watchdog plumbing are in `names`, `scanner`, `settle`
and `fsevents`.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from loguru import logger

from coordinator.fsevents import Inbox, Observation
from coordinator.names import Bucket, Buckets, kind_of, posix_relpath
from coordinator.scanner import walk
from coordinator.settle import Settler

STAT_KEYS = ("events", "scans", "rescans_overflow", "ignored", "rejected", "sightings", "errors", "vanished")

Key = tuple[str, str, int, int, int]

_COUNTED_MAX = 100_000


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more, per file of a scan
class Sighting:
    """One version of one entry in a bucket, ready to become a job.

    `kind` is "file", "symlink", "fifo", "device" or "socket" (the watcher never emits "directory", and
    "missing" is left to the coordinator for files that vanish later).
    """

    root: Path
    abspath: str
    kind: str
    key: Key  # the idempotency key of this version: (bucket, relpath, size, mtime_ns, inode)

    # One key tuple, shared with the job made from it: a 100k-file scan holds 100k of each at once.

    @property
    def bucket(self) -> str:
        return self.key[0]

    @property
    def relpath(self) -> str:
        return self.key[1]

    @property
    def size(self) -> int:
        return self.key[2]

    @property
    def mtime_ns(self) -> int:
        return self.key[3]

    @property
    def inode(self) -> int:
        return self.key[4]

    @property
    def path(self) -> Path:
        """The entry's absolute path (built on demand: the loop only needs `abspath`)."""
        return Path(self.abspath)


class Watcher:
    """Watches the buckets and hands the loop the files that are ready; see the module docstring.

    Everything but watchdog's callbacks runs in the loop's thread. `stats` holds counters: events, scans,
    rescans_overflow, ignored, rejected, sightings, errors, vanished.
    """

    def __init__(
        self,
        buckets: list[tuple[str, Path, list[str], list[str]]],
        *,
        temp_ignore: list[str],
        exclude_dirs: list[Path],
        settle_s: float,
        rescan_interval_s: float,
        wake: Callable[[], None],
        polling: bool = False,
        clock: Callable[[], float] = time.monotonic,
        known: Callable[[Key], bool] = lambda key: False,
    ) -> None:
        # Versions the caller already has (the job queue): a rescan skips them instead of re-emitting
        # every file of the buckets every interval.
        self._known = known
        self._buckets = Buckets(temp_ignore, exclude_dirs)
        for name, root, patterns, ignore in buckets:
            self._buckets.add(name, root, patterns, ignore)
        self._settle_ns = int(settle_s * 1e9)
        self._rescan_interval_s = rescan_interval_s
        self._clock = clock
        self._inbox = Inbox(wake)
        self._observation = Observation(self._inbox, polling=polling)
        self._started = False
        self._settler: Settler[Bucket] = Settler(settle_s)
        self._scans: dict[str, set[str]] = {}  # bucket name -> directories to walk
        self._next_rescan = 0.0
        self._rescan_requested = False
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._counted: dict[str, str] = {}  # path -> the verdict it was counted under

    def start(self) -> None:
        """Create missing bucket roots, start the observer, then queue a full scan of every bucket."""
        if self._started:
            return
        for bucket in self._buckets:
            bucket.root_path.mkdir(parents=True, exist_ok=True)
        # Again, now that the roots exist: their real paths place the excluded directories inside them.
        self._buckets.refresh_exclusions()
        polling = self._observation.polling
        self._observation.start([b.root for b in self._buckets])
        if self._observation.polling != polling:
            self.stats["errors"] += 1  # fell back to polling
        self._started = True
        self._queue_all()
        self._next_rescan = self._clock() + self._rescan_interval_s

    def stop(self) -> None:
        """Stop the observer and join its threads (bounded)."""
        self._started = False
        self._observation.stop()

    @property
    def settling(self) -> int:
        """How many files are waiting for their settle window (a gauge for status and tests). A removed
        bucket's files still count until their window ends, when they are dropped."""
        return len(self._settler)

    @property
    def bucket_names(self) -> list[str]:
        """The watched buckets' names, in the order they were added."""
        return self._buckets.names

    def add_bucket(self, name: str, root: Path, patterns: list[str], ignore: list[str]) -> None:
        """Start watching one more bucket: create its root if missing, schedule its watch on the running
        observer, and queue a full scan of it (so files already there become sightings at the next poll()).

        Before `start()` it only registers the bucket; `start()` creates and watches it with the others.
        Raises `ValueError` if the name or the root is already a bucket's, `OSError` if the root cannot be
        created or watched; either way the watcher is left as it was (a root created just now stays).
        """
        bucket = self._buckets.add(name, root, patterns, ignore)
        if not self._started:
            return
        try:
            bucket.root_path.mkdir(parents=True, exist_ok=True)
            self._buckets.refresh_exclusions()  # the root's real path exists now
            self._observation.watch(bucket.root)
        except BaseException:
            self._buckets.remove(name)
            raise
        # A bucket nested in another takes its directory over: the outer bucket's queued walks there would
        # emit the inner bucket's files under the outer name. (The outer's settling files there are handed
        # over when their timers come up, in _check_settling.)
        for owner, dirs in list(self._scans.items()):
            dirs.difference_update([d for d in dirs if d == bucket.root or d.startswith(bucket.prefix)])
            if not dirs:
                del self._scans[owner]
        self._queue_scan(bucket, bucket.root)
        logger.info("watcher: watching bucket {!r} at {}", name, bucket.root)

    def remove_bucket(self, name: str) -> None:
        """Stop watching a bucket: unschedule its watch, drop its pending scans, its settling files and any
        inbox events under its root (they must not turn into sightings after removal).

        Raises `ValueError` if there is no bucket of that name. Events and settling files are dropped where
        `poll()` next looks at them and finds no bucket (or, in a nested bucket, the outer one).
        """
        bucket = self._buckets.remove(name)
        self._observation.unwatch(bucket.root)
        self._scans.pop(name, None)
        if self._started:
            self._queue_dir(bucket.root)  # no-op unless an outer bucket holds the root
        logger.info("watcher: stopped watching bucket {!r} at {}", name, bucket.root)

    def set_excluded_dirs(self, exclude_dirs: list[Path]) -> None:
        """The directories to leave alone now (the state dir, processed/quarantine and every bucket's notes
        dir): a removed bucket's notes dir is free again, an added one's is left alone."""
        self._buckets.set_excluded_dirs(exclude_dirs)

    def tune(self, settle_s: float, rescan_interval_s: float) -> None:
        """A reloaded config's settle window and rescan interval. Files already settling keep their timers;
        the next rescan comes no later than the new interval from now."""
        self._settle_ns = int(settle_s * 1e9)
        self._settler.settle_s = settle_s
        self._rescan_interval_s = rescan_interval_s
        self._next_rescan = min(self._next_rescan, self._clock() + rescan_interval_s)

    def request_rescan(self) -> None:
        """Scan every bucket at the next `poll()`."""
        self._rescan_requested = True

    def next_due(self) -> float | None:
        """Clock time at which `poll()` has work (now if some is waiting); None unless started."""
        if not self._started:
            return None
        if self._inbox or self._scans or self._rescan_requested:
            return self._clock()
        settle_due = self._settler.next_due()
        return self._next_rescan if settle_due is None else min(settle_due, self._next_rescan)

    def poll(self) -> list[Sighting]:
        """Handle queued events, run due scans and settle checks; return the sightings ready now.

        Never raises: a failure is logged and counted in `stats["errors"]`.
        """
        if not self._started:
            return []
        out: dict[Key, Sighting] = {}
        now = self._clock()
        if self._inbox.take_overflow():
            self.stats["rescans_overflow"] += 1
            logger.warning("watcher: inotify queue overflowed, events were lost; rescanning every bucket")
            self._queue_all()
        if self._rescan_requested or now >= self._next_rescan:
            self._rescan_requested = False
            self._next_rescan = now + self._rescan_interval_s
            self._queue_all()
        for kind, path, dest in self._inbox.take():
            self.stats["events"] += 1
            try:
                self._on_event(kind, path, dest, out)
            except Exception:
                self.stats["errors"] += 1
                logger.exception("watcher: failed to handle {} event for {}", kind, path)
        self._run_scans(out)
        try:
            self._check_settling(out)
        except Exception:
            self.stats["errors"] += 1
            logger.exception("watcher: settle check failed")
        self.stats["sightings"] += len(out)
        return list(out.values())

    # -- events ------------------------------------------------------------------------------------------

    def _on_event(self, kind: str, path: str, dest: str, out: dict[Key, Sighting]) -> None:
        if kind == "closed":
            self._look_at(path, out, ready=True)
        elif kind in ("created", "modified"):
            self._look_at(path, out, ready=False)
        elif kind == "moved":
            self._settler.discard(path)  # the old name is gone; the new one is judged below
            self._look_at(dest, out, ready=True)
        elif kind == "dir_created":
            self._queue_dir(path)
        elif kind == "dir_moved" and dest:  # a directory moved out of every bucket has no dest
            self._queue_dir(dest)

    def _look_at(self, path: str, out: dict[Key, Sighting], *, ready: bool) -> None:
        found = self._buckets.locate(path) if path else None
        if found is None:  # moved out of every bucket
            return
        bucket, relpath = found
        if not relpath:
            self._queue_scan(bucket, bucket.root)
            return
        if self._buckets.exclusions.covers(path):
            self._count_once("ignored", path)
            return
        verdict = bucket.rules.verdict(relpath)
        if verdict != "ok":
            self._count_once(verdict, path)
            return
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._settler.discard(path)
            self.stats["vanished"] += 1
            return
        except OSError as exc:
            self.stats["errors"] += 1
            logger.warning("watcher: cannot stat {}: {}", path, exc)
            return
        if stat.S_ISDIR(st.st_mode):
            self._queue_scan(bucket, path)
        else:
            self._consider(bucket, path, relpath, st, out, ready=ready)

    def _consider(
        self,
        bucket: Bucket,
        path: str,
        relpath: str,
        st: os.stat_result,
        out: dict[Key, Sighting],
        *,
        ready: bool,
    ) -> None:
        # st_mtime_ns is wall-clock time, so its age is measured with time.time_ns(), not self._clock.
        if ready or not stat.S_ISREG(st.st_mode) or time.time_ns() - st.st_mtime_ns >= self._settle_ns:
            self._settler.discard(path)
            self._emit(bucket, relpath, st, out)
        elif (bucket.name, relpath, st.st_size, st.st_mtime_ns, st.st_ino) not in out:
            # (A scan of a new directory often meets files this very poll emitted on their close events.)
            self._settler.watch(path, bucket, (st.st_size, st.st_mtime_ns, st.st_ino), self._clock())

    def _emit(self, bucket: Bucket, relpath: str, st: os.stat_result, out: dict[Key, Sighting]) -> None:
        key = (bucket.name, relpath, st.st_size, st.st_mtime_ns, st.st_ino)
        if key in out or self._known(key):
            return
        kind = kind_of(st.st_mode)
        out[key] = Sighting(bucket.root_path, bucket.prefix + relpath, kind, key)

    def _check_settling(self, out: dict[Key, Sighting]) -> None:
        now = self._clock()
        for entry in self._settler.pop_due(now):
            path, bucket = entry.path, entry.tag
            found = self._buckets.locate(path)
            if found is None or found[0] is not bucket:
                # A bucket was added or removed since its timer started: judge it afresh under the bucket
                # that owns it now, if any (its rules, its name in the key).
                self._settler.discard(path)
                self._look_at(path, out, ready=False)
                continue
            try:
                st = os.lstat(path)
            except OSError as exc:
                self._settler.discard(path)
                if isinstance(exc, FileNotFoundError | NotADirectoryError):
                    self.stats["vanished"] += 1
                else:
                    self.stats["errors"] += 1
                    logger.warning("watcher: cannot stat {}: {}", path, exc)
                continue
            sig = (st.st_size, st.st_mtime_ns, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                self._settler.discard(path)
                self._queue_scan(bucket, path)
            elif sig == entry.sig or not stat.S_ISREG(st.st_mode):
                self._settler.discard(path)
                self._emit(bucket, found[1], st, out)
            else:
                self._settler.rearm(entry, sig, now)

    # -- scans -------------------------------------------------------------------------------------------

    def _queue_all(self) -> None:
        for bucket in self._buckets:
            self._queue_scan(bucket, bucket.root)

    def _queue_scan(self, bucket: Bucket, directory: str) -> None:
        dirs = self._scans.setdefault(bucket.name, set())
        if bucket.root in dirs:
            return  # a full scan is coming anyway
        if directory == bucket.root:
            dirs.clear()
        dirs.add(directory)

    def _count_once(self, verdict: str, path: str) -> None:
        """Count an ignored or rejected path once, not again on every rescan. The memory is bounded: past
        `_COUNTED_MAX` paths it starts afresh (a path may then be counted twice, never lost)."""
        if self._counted.get(path) == verdict:
            return
        if len(self._counted) >= _COUNTED_MAX:
            self._counted.clear()
        self._counted[path] = verdict
        self.stats[verdict] += 1

    def _queue_dir(self, path: str) -> None:
        """A directory appeared (created or moved in): walk it, unless its name or place says not to."""
        found = self._buckets.locate(path) if path else None
        if found is None:
            return
        bucket, relpath = found
        if relpath and (
            any(bucket.rules.is_temp(part) for part in relpath.split("/"))
            or self._buckets.exclusions.covers(path)
        ):
            self._count_once("ignored", path)
            return
        self._queue_scan(bucket, path if relpath else bucket.root)

    def _run_scans(self, out: dict[Key, Sighting]) -> None:
        scans, self._scans = self._scans, {}
        for name, dirs in scans.items():
            bucket = self._buckets[name]
            for directory in sorted(dirs):
                try:
                    self._scan(bucket, directory, out)
                except Exception:
                    self.stats["errors"] += 1
                    logger.exception("watcher: scan of {} failed", directory)

    def _scan(self, bucket: Bucket, top: str, out: dict[Key, Sighting]) -> None:
        self.stats["scans"] += 1
        full = top == bucket.root
        if full:
            try:
                self._observation.ensure_watched(bucket.root)
            except OSError as exc:
                self.stats["errors"] += 1
                logger.error("watcher: cannot watch bucket {!r} at {}: {}", bucket.name, bucket.root, exc)

        exclusions, roots = self._buckets.exclusions, self._buckets.roots

        def prune(path: str, name: str) -> bool:
            if bucket.rules.is_temp(name) or exclusions.covers(path):
                self._count_once("ignored", path)
                return True
            return path in roots  # a nested bucket is scanned as itself

        # One "now" per scan: a file that settles during the scan waits for its timer (never too early).
        settled_before = time.time_ns() - self._settle_ns
        try:
            for entries in walk(top, prune=prune, on_error=self._scan_error):
                self._take(bucket, entries, settled_before, out)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if full:
                self.stats["errors"] += 1
                logger.error("watcher: bucket {!r} root {} is missing: {}", bucket.name, bucket.root, exc)
            # else: a new subdirectory that is already gone again; nothing to report
        except OSError as exc:
            self._scan_error(top, exc)

    def _take(
        self, bucket: Bucket, entries: list[os.DirEntry[str]], settled_before: int, out: dict[Key, Sighting]
    ) -> None:
        """One directory's non-directory entries, found by a scan: emit the settled ones, time the others.

        The start-up hot path (100,000 files must be admitted in well under 2 s), so it is written out here
        rather than going through `_consider`/`_emit` once per file.
        """
        settler, out_get, known, verdict = self._settler, out.get, self._known, bucket.rules.verdict
        settling = len(settler) > 0
        name, prefix, root_path, cut = bucket.name, bucket.prefix, bucket.root_path, len(bucket.prefix)
        for entry in entries:
            path = entry.path
            relpath = posix_relpath(path[cut:])
            # Directories on the way down were checked by prune(), excluded ones included (an excluded
            # directory cannot be a non-directory entry): only the name is left to look at.
            verdict_ = verdict(relpath, dirs_checked=True)
            if verdict_ != "ok":
                self._count_once(verdict_, path)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone between readdir and stat
            except OSError as exc:
                self._scan_error(path, exc)
                continue
            key = (name, relpath, st.st_size, st.st_mtime_ns, st.st_ino)
            mode = st.st_mode
            if st.st_mtime_ns <= settled_before or not S_ISREG(mode):
                if settling:
                    settler.discard(path)
                if out_get(key) is None and not known(key):
                    out[key] = Sighting(root_path, prefix + relpath, kind_of(mode), key)
            elif out_get(key) is None:
                # (A scan of a new directory often meets files this poll emitted on their close events.)
                settler.watch(path, bucket, (st.st_size, st.st_mtime_ns, st.st_ino), self._clock())
                settling = True

    def _scan_error(self, path: str, exc: OSError) -> None:
        self.stats["errors"] += 1
        logger.warning("watcher: cannot scan {}: {}", path, exc)
