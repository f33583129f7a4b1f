"""The watcher against real watchdog observers on real directories.

Every wait is a polled condition with a deadline; the only timed waits are the few places where the point
is that something must *not* happen during a stretch of time (a slow writer must not be emitted mid-write).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers import inotify_c

from coordinator.config import DEFAULT_TEMP_IGNORES
from coordinator.fsevents import OVERFLOW_LOGGER, OVERFLOW_MESSAGE
from coordinator.watcher import Key, Sighting, Watcher

# watchdog warns when a new directory's watch is registered twice (its own creation event and its parent's
# recursive walk race); that is its bookkeeping, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

OLD_NS = time.time_ns() - 3600 * 10**9  # an hour ago: "settled" by any settle window


def poll_until(pred: Callable[[], object], timeout: float) -> bool:
    """Call `pred` every 10 ms until it is truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class Recorder:
    """A started watcher plus every sighting it has returned so far."""

    def __init__(self, watcher: Watcher, wakes: list[int], clock: Callable[[], float]) -> None:
        self.w = watcher
        self.wakes = wakes
        self.clock = clock
        self.seen: list[Sighting] = []

    def poll(self) -> list[Sighting]:
        new = self.w.poll()
        keys = [s.key for s in new]
        assert len(keys) == len(set(keys)), "one poll() returned a key twice"
        self.seen.extend(new)
        return new

    def until(self, pred: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        def step() -> object:
            self.poll()
            return pred()

        if not poll_until(step, timeout):
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; seen {sorted(self.relpaths)}"
            )

    def until_seen(self, *relpaths: str, timeout: float = 10.0) -> None:
        self.until(lambda: set(relpaths) <= self.relpaths, f"sightings of {relpaths}", timeout)

    def idle(self) -> None:
        """Wait until nothing is settling and no event or scan is waiting (next_due() is in the future)."""

        def quiet() -> bool:
            due = self.w.next_due()
            return self.w.settling == 0 and due is not None and due > self.clock()

        self.until(quiet, "an idle watcher")

    @property
    def relpaths(self) -> set[str]:
        return {s.relpath for s in self.seen}

    @property
    def pairs(self) -> set[tuple[str, str]]:
        """(bucket, relpath) of every sighting: for tests with several buckets."""
        return {(s.bucket, s.relpath) for s in self.seen}

    def until_seen_in(self, bucket: str, *relpaths: str, timeout: float = 10.0) -> None:
        want = {(bucket, r) for r in relpaths}
        self.until(lambda: want <= self.pairs, f"sightings of {relpaths} in bucket {bucket!r}", timeout)

    def of(self, relpath: str) -> list[Sighting]:
        return [s for s in self.seen if s.relpath == relpath]


Make = Callable[..., Recorder]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Build and start watchers; each one is stopped when the test ends, whatever happens."""
    started: list[Watcher] = []

    def build(
        buckets: list[tuple[str, Path, list[str], list[str]]] | None = None,
        *,
        start: bool = True,
        **kw: Any,
    ) -> Recorder:
        wakes: list[int] = []
        options: dict[str, Any] = {
            "temp_ignore": list(DEFAULT_TEMP_IGNORES),
            "exclude_dirs": [],
            "settle_s": 0.2,
            "rescan_interval_s": 3600.0,
            "wake": lambda: wakes.append(1),
        }
        options.update(kw)
        watcher = Watcher(buckets or [("in", tmp_path / "in", ["*"], [])], **options)
        started.append(watcher)
        if start:
            watcher.start()
        return Recorder(watcher, wakes, options.get("clock", time.monotonic))

    yield build
    for watcher in started:
        watcher.stop()


def write(path: Path, data: bytes = b"x", *, old: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if old:
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


@pytest.mark.timeout(60)
def test_preexisting_files_are_found_at_start(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    write(bucket / "a.txt", b"hello", old=True)
    write(bucket / "sub" / "b.txt", old=True)
    write(bucket / "fresh.txt")
    rec = make()
    first = rec.poll()  # the initial scan runs in the first poll: settled files come out at once
    assert {s.relpath for s in first} >= {"a.txt", "sub/b.txt"}
    rec.until_seen("fresh.txt")
    [a] = rec.of("a.txt")
    st = (bucket / "a.txt").stat()
    assert a.bucket == "in" and a.root == bucket and a.path == bucket / "a.txt" and a.kind == "file"
    assert (a.size, a.mtime_ns, a.inode) == (5, st.st_mtime_ns, st.st_ino)
    assert a.key == ("in", "a.txt", 5, st.st_mtime_ns, st.st_ino)


@pytest.mark.timeout(60)
def test_written_and_closed_file_is_emitted_once_without_waiting_to_settle(
    tmp_path: Path, make: Make
) -> None:
    rec = make(settle_s=5.0)
    rec.poll()
    write(tmp_path / "in" / "a.csv", b"1,2\n")
    rec.until_seen("a.csv", timeout=4.0)  # well inside settle_s: the close made it ready
    write(tmp_path / "in" / "z.csv")
    rec.until_seen("z.csv", timeout=4.0)
    rec.idle()
    [a] = rec.of("a.csv")
    st = (tmp_path / "in" / "a.csv").stat()
    assert a.key == ("in", "a.csv", 4, st.st_mtime_ns, st.st_ino)
    assert rec.wakes, "the observer thread never woke the loop"


@pytest.mark.timeout(60)
def test_tmp_renamed_to_final_name_is_emitted_under_the_final_name(tmp_path: Path, make: Make) -> None:
    rec = make(settle_s=5.0)
    rec.poll()
    tmp = write(tmp_path / "in" / "x.tmp", b"data")
    tmp.rename(tmp_path / "in" / "x.csv")
    rec.until_seen("x.csv", timeout=4.0)
    assert not rec.of("x.tmp")
    assert rec.w.stats["ignored"] >= 1
    [x] = rec.of("x.csv")
    assert x.size == 4


@pytest.mark.timeout(60)
def test_temp_and_hidden_names_are_ignored(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    write(bucket / ".git" / "config", old=True)  # present at start: the scan must not descend into .git
    rec = make()
    rec.poll()
    temp = [
        ".hidden",
        "~lock.docx",
        "a.part",
        "b.crdownload",
        "c.tmp",
        ".git/HEAD",
        "sub/.cache/c.txt",
        ".d/x.txt",
    ]
    for name in temp:
        write(bucket / name)
    write(bucket / "ok.txt")
    rec.until_seen("ok.txt")
    rec.w.request_rescan()
    rec.idle()
    leaked = rec.relpaths & {*temp, ".git/config"}
    assert not leaked
    assert rec.relpaths == {"ok.txt"}
    assert rec.w.stats["ignored"] >= len(temp)


@pytest.mark.timeout(60)
def test_pattern_and_ignore_globs_reject_and_count(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    rec = make([("in", bucket, ["*.csv", "reports/*.txt"], ["skip_*", "reports/private/*"])])
    rec.poll()
    for name in ["b.txt", "skip_me.csv", "reports/private/p.txt"]:
        write(bucket / name)
    for name in ["a.csv", "reports/r.txt", "reports/2024/deep.txt"]:
        write(bucket / name)
    rec.until_seen("a.csv", "reports/r.txt", "reports/2024/deep.txt")
    rec.idle()
    assert rec.relpaths == {"a.csv", "reports/r.txt", "reports/2024/deep.txt"}
    assert rec.w.stats["rejected"] >= 3


@pytest.mark.timeout(60)
def test_files_in_a_brand_new_subdirectory_are_all_emitted(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    rec = make()
    rec.poll()
    deep = bucket / "new" / "a" / "b"
    deep.mkdir(parents=True)
    expected = set()
    for i in range(100):
        where = deep if i % 2 else bucket / "new"
        write(where / f"f{i:03}.txt", b"%d" % i)
        expected.add((where / f"f{i:03}.txt").relative_to(bucket).as_posix())
    rec.until(lambda: expected <= rec.relpaths, "every file of the new tree")
    rec.idle()
    by_path: dict[str, set[Key]] = defaultdict(set)
    for s in rec.seen:
        by_path[s.relpath].add(s.key)
    assert all(len(keys) == 1 for keys in by_path.values())


@pytest.mark.timeout(60)
def test_directory_moved_into_a_bucket_is_scanned(tmp_path: Path, make: Make) -> None:
    outside = tmp_path / "elsewhere" / "batch"
    for i in range(20):
        write(outside / f"{i}.txt", old=True)
    rec = make()
    rec.poll()
    outside.rename(tmp_path / "in" / "batch")
    rec.until(lambda: {f"batch/{i}.txt" for i in range(20)} <= rec.relpaths, "the moved-in directory's files")


@pytest.mark.timeout(60)
def test_settled_file_moved_in_from_outside_is_emitted_at_once(tmp_path: Path, make: Make) -> None:
    # A rename from outside the watched tree: ready at once (and its old mtime says nobody is writing).
    src = write(tmp_path / "elsewhere" / "report.pdf", b"%PDF", old=True)
    rec = make(settle_s=5.0)
    rec.poll()
    src.rename(tmp_path / "in" / "report.pdf")
    rec.until_seen("report.pdf", timeout=4.0)


@pytest.mark.timeout(60)
def test_fresh_file_renamed_in_from_outside_is_emitted_without_waiting_to_settle(
    tmp_path: Path, make: Make
) -> None:
    # The usual atomic drop: write elsewhere, rename in. inotify's unmatched IN_MOVED_TO says no writer
    # can still hold it, so the settle window (5 s here) must not apply, however fresh its mtime.
    rec = make(settle_s=5.0)
    rec.poll()
    staged = write(tmp_path / "staging" / "fresh.txt", b"just written")
    os.rename(staged, tmp_path / "in" / "fresh.txt")
    rec.until_seen("fresh.txt", timeout=2.0)


@pytest.mark.timeout(60)
def test_symlinks_and_fifos_are_emitted_with_their_kinds_never_followed(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    target = write(tmp_path / "outside" / "secret.txt", old=True)
    write(bucket / "sub" / "real.txt", old=True)
    bucket.mkdir(exist_ok=True)
    os.mkfifo(bucket / "old_pipe")
    (bucket / "dirlink").symlink_to(bucket / "sub")
    (bucket / "outlink").symlink_to(tmp_path / "outside")
    rec = make()
    rec.poll()
    (bucket / "link.csv").symlink_to(target)
    os.mkfifo(bucket / "pipe")
    rec.until_seen("link.csv", "pipe", "old_pipe", "dirlink", "outlink", "sub/real.txt")
    rec.idle()
    kinds = {s.relpath: s.kind for s in rec.seen}
    assert kinds == {
        "link.csv": "symlink",
        "pipe": "fifo",
        "old_pipe": "fifo",
        "dirlink": "symlink",
        "outlink": "symlink",
        "sub/real.txt": "file",
    }


@pytest.mark.timeout(60)
def test_excluded_directories_inside_a_bucket_are_not_emitted(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    write(bucket / "notes" / "pre.md", old=True)
    write(bucket / "state" / "queue.db", old=True)
    bucket_alias = tmp_path / "alias"
    bucket_alias.symlink_to(bucket)  # the state dir is named through a symlink: events still use "in/"
    rec = make(exclude_dirs=[bucket / "notes", bucket_alias / "state"])
    rec.poll()
    write(bucket / "notes" / "new.md")
    write(bucket / "notes" / "sub" / "deep.md")
    write(bucket / "state" / "queue.db-wal")
    write(bucket / "ok.txt")
    rec.until_seen("ok.txt")
    rec.w.request_rescan()
    rec.idle()
    assert rec.relpaths == {"ok.txt"}
    assert rec.w.stats["ignored"] >= 3


@pytest.mark.timeout(60)
def test_rescan_of_unchanged_files_brings_no_new_keys(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    for i in range(50):
        write(bucket / f"d{i % 5}" / f"{i}.txt", b"%d" % i, old=i % 2 == 0)
    rec = make()
    rec.until(lambda: len(rec.relpaths) == 50, "the initial 50 files")
    rec.idle()
    before = {s.key for s in rec.seen}
    count = len(rec.seen)
    rec.w.request_rescan()
    scans = rec.w.stats["scans"]
    rec.until(lambda: len(rec.seen) >= count + 50, "the rescan's sightings")
    rec.idle()
    assert rec.w.stats["scans"] > scans
    assert {s.key for s in rec.seen[count:]} == before


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs if /dev/shm exists (where bursts overflow the kernel queue most easily)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    path = Path(tempfile.mkdtemp(prefix="obw-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(60)
def test_a_burst_of_3000_files_is_emitted_once_each(shm_dir: Path, make: Make) -> None:
    bucket = shm_dir / "in"
    rec = make([("in", bucket, ["*"], [])])
    rec.poll()
    sizes = {}
    for i in range(3000):
        name = f"b{i // 500}/f{i:05}.dat"
        data = b"y" * (i % 97 + 1)
        write(bucket / name, data)
        sizes[name] = len(data)
    rec.until(lambda: rec.relpaths >= set(sizes), "all 3000 files", timeout=45.0)
    rec.idle()
    assert rec.relpaths == set(sizes)
    keys_by_path: dict[str, set[Key]] = defaultdict(set)
    for s in rec.seen:
        keys_by_path[s.relpath].add(s.key)
    assert all(len(keys) == 1 for keys in keys_by_path.values()), "a file was seen in two versions"
    assert all(next(iter(keys_by_path[p]))[2] == size for p, size in sizes.items())


@pytest.mark.timeout(60)
def test_slow_writer_is_not_emitted_before_it_closes(tmp_path: Path, make: Make) -> None:
    path = tmp_path / "in" / "slow.bin"
    rec = make(settle_s=1.0)
    rec.poll()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        for part in range(3):
            os.write(fd, b"z" * 1000)
            # Writes 0.45 s apart, over 1.35 s: longer than one settle window, but never still for one.
            pause_until = time.monotonic() + 0.45
            while time.monotonic() < pause_until:
                rec.poll()
                assert not rec.of("slow.bin"), f"emitted mid-write, after part {part + 1}"
                time.sleep(0.01)
    finally:
        os.close(fd)
    rec.until_seen("slow.bin", timeout=5.0)
    rec.idle()
    [s] = rec.of("slow.bin")
    assert s.size == 3000


@pytest.mark.timeout(60)
def test_file_left_open_is_emitted_once_it_settles(tmp_path: Path, make: Make) -> None:
    rec = make(settle_s=0.3)
    rec.poll()
    fd = os.open(tmp_path / "in" / "open.log", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"abc")
        written = time.monotonic()
        rec.until_seen("open.log", timeout=5.0)
        assert time.monotonic() - written >= 0.25
        [s] = rec.of("open.log")
        assert s.size == 3
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_overflow_log_line_triggers_a_full_rescan(tmp_path: Path, make: Make) -> None:
    # The message we listen for is the one the installed watchdog really logs.
    assert OVERFLOW_MESSAGE in inspect.getsource(inotify_c)
    assert inotify_c.logger.name == OVERFLOW_LOGGER
    write(tmp_path / "in" / "a.txt", old=True)
    rec = make()
    rec.until_seen("a.txt")
    rec.idle()
    wakes, scans, count = len(rec.wakes), rec.w.stats["scans"], len(rec.seen)
    logging.getLogger(OVERFLOW_LOGGER).warning("Inotify queue overflowed; filesystem events were lost")
    assert len(rec.wakes) > wakes
    due = rec.w.next_due()
    assert due is not None and due <= time.monotonic()
    rec.until(lambda: len(rec.seen) > count, "the rescan's sighting")
    assert rec.w.stats["rescans_overflow"] == 1
    assert rec.w.stats["scans"] > scans


@pytest.mark.timeout(60)
def test_rescan_of_10000_files_is_fast(shm_dir: Path, make: Make) -> None:
    bucket = shm_dir / "in"
    for d in range(20):
        (bucket / f"d{d}").mkdir(parents=True)
    for i in range(10_000):
        p = bucket / f"d{i % 20}" / f"{i}.txt"
        p.write_bytes(b"q")
        os.utime(p, ns=(OLD_NS, OLD_NS))
    rec = make([("in", bucket, ["*"], [])])
    rec.until(lambda: len(rec.relpaths) == 10_000, "the initial 10,000 files", timeout=30.0)
    rec.idle()
    best = float("inf")
    for _ in range(3):
        rec.w.request_rescan()
        # CPU time of this thread, best of three: the cost of our code, not of a busy machine's scheduler.
        t0 = time.thread_time()
        found = rec.poll()
        best = min(best, time.thread_time() - t0)
        assert len(found) == 10_000
    assert best < 0.5, f"a rescan of 10,000 files took {best:.3f}s of CPU"


@pytest.mark.timeout(60)
def test_bucket_root_removed_then_recreated(tmp_path: Path, make: Make) -> None:
    bucket = tmp_path / "in"
    rec = make(settle_s=5.0)
    rec.poll()
    shutil.rmtree(bucket)
    # Wait for watchdog to notice (its emitter stops on IN_DELETE_SELF) so the re-watch has something to do.
    observer = rec.w._observation._observer
    assert observer is not None
    assert poll_until(lambda: not any(e.is_alive() for e in list(observer.emitters)), 10)
    rec.w.request_rescan()
    rec.poll()  # must not raise
    assert rec.w.stats["errors"] >= 1
    bucket.mkdir()
    rec.w.request_rescan()
    rec.poll()  # the full scan re-watches the root
    write(bucket / "back.txt")
    rec.until_seen("back.txt", timeout=4.0)  # inside settle_s: a closed event, so the watch is live


@pytest.mark.timeout(60)
def test_polling_observer_sees_new_files(tmp_path: Path, make: Make) -> None:
    rec = make(polling=True)
    rec.poll()
    write(tmp_path / "in" / "nfs.txt", b"remote")
    rec.until_seen("nfs.txt", timeout=15.0)
    [s] = rec.of("nfs.txt")
    assert s.size == 6


@pytest.mark.timeout(60)
def test_nested_buckets_each_own_their_files(tmp_path: Path, make: Make) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    write(inner / "pre.txt", old=True)
    rec = make([("outer", outer, ["*"], []), ("inner", inner, ["*"], [])])
    rec.poll()
    write(outer / "o.txt")
    write(inner / "i.txt")
    rec.until_seen("o.txt", "i.txt", "pre.txt")
    rec.w.request_rescan()
    rec.idle()
    assert {(s.bucket, s.relpath) for s in rec.seen} == {
        ("outer", "o.txt"),
        ("inner", "i.txt"),
        ("inner", "pre.txt"),
    }


@pytest.mark.timeout(60)
def test_next_due_follows_the_clock(tmp_path: Path, make: Make) -> None:
    now = [1000.0]
    # settle_s is also the wall-clock age that makes a scanned file settled: 5 s keeps fresh.txt fresh.
    rec = make(settle_s=5.0, rescan_interval_s=30.0, clock=lambda: now[0], start=False)
    assert rec.w.next_due() is None and rec.w.poll() == []
    write(tmp_path / "in" / "fresh.txt")
    rec.w.start()
    assert rec.w.next_due() == 1000.0  # the initial scan is due now
    rec.poll()
    assert rec.w.settling == 1
    assert rec.w.next_due() == 1005.0
    now[0] = 1005.1
    rec.until_seen("fresh.txt")
    rec.idle()
    assert rec.w.next_due() == 1030.0
    rec.w.request_rescan()
    assert rec.w.next_due() == now[0]


@pytest.mark.timeout(60)
def test_rejected_and_ignored_files_are_counted_once_across_rescans(tmp_path: Path) -> None:
    bucket = tmp_path / "b"
    bucket.mkdir()
    (bucket / "keep.txt").write_text("x")
    (bucket / "skip.csv").write_text("x")
    (bucket / "half.part").write_text("x")
    w = Watcher(
        [("b", bucket, ["*.txt"], [])],
        temp_ignore=["*.part"],
        exclude_dirs=[],
        settle_s=0.0,
        rescan_interval_s=3600,
        wake=lambda: None,
    )
    w.start()
    try:
        assert poll_until(lambda: any(s.relpath == "keep.txt" for s in w.poll()), 10)
        for _ in range(3):
            w.request_rescan()
            w.poll()
        assert w.stats["rejected"] == 1 and w.stats["ignored"] == 1
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_versions_the_queue_knows_are_not_emitted_again(tmp_path: Path) -> None:
    bucket = tmp_path / "b"
    write(bucket / "old.txt", old=True)
    seen: set[tuple[str, str, int, int, int]] = set()
    w = Watcher(
        [("b", bucket, ["*"], [])],
        temp_ignore=[],
        exclude_dirs=[],
        settle_s=0.0,
        rescan_interval_s=3600,
        wake=lambda: None,
        known=lambda key: key in seen,
    )
    w.start()
    try:
        first = w.poll()
        assert [s.relpath for s in first] == ["old.txt"]
        seen.update(s.key for s in first)
        w.request_rescan()
        assert w.poll() == []
        write(bucket / "old.txt", b"changed", old=True)  # a new version is news again
        w.request_rescan()
        assert [s.relpath for s in w.poll()] == ["old.txt"]
    finally:
        w.stop()


# -- buckets added and removed at run time ----------------------------------------------------------------


def emitters(rec: Recorder) -> int:
    """How many watches the running observer has (one emitter per bucket root)."""
    observer = rec.w._observation._observer
    assert observer is not None
    return len(observer.emitters)


@pytest.mark.timeout(60)
def test_bucket_added_to_a_running_watcher_is_scanned_and_watched(tmp_path: Path, make: Make) -> None:
    rec = make(settle_s=5.0)
    rec.poll()
    observer = rec.w._observation._observer
    write(tmp_path / "more" / "sub" / "pre.txt", b"already here", old=True)
    rec.w.add_bucket("more", tmp_path / "more", ["*"], [])
    assert rec.w.bucket_names == ["in", "more"]
    rec.until_seen_in("more", "sub/pre.txt")  # the full scan queued by add_bucket
    write(tmp_path / "more" / "new.txt")
    write(tmp_path / "in" / "old_bucket.txt")
    # Well inside settle_s: both arrive as closed events, so both watches are live.
    rec.until_seen_in("more", "new.txt", timeout=4.0)
    rec.until_seen_in("in", "old_bucket.txt", timeout=4.0)
    assert rec.w._observation._observer is observer, "the observer was restarted"
    assert emitters(rec) == 2
    [pre] = [s for s in rec.seen if s.relpath == "sub/pre.txt"]
    assert pre.root == tmp_path / "more" and pre.path == tmp_path / "more" / "sub" / "pre.txt"


@pytest.mark.timeout(60)
def test_added_bucket_root_is_created_and_its_globs_apply(tmp_path: Path, make: Make) -> None:
    rec = make()
    rec.poll()
    root = tmp_path / "deep" / "new"
    rec.w.add_bucket("csv", root, ["*.csv"], ["skip_*"])
    assert root.is_dir()
    for name in ["a.csv", "skip_b.csv", "c.txt", ".hidden.csv"]:
        write(root / name)
    rec.until_seen_in("csv", "a.csv")
    rec.w.request_rescan()
    rec.idle()
    assert {r for b, r in rec.pairs if b == "csv"} == {"a.csv"}


@pytest.mark.timeout(60)
def test_removed_bucket_brings_no_sightings_while_the_others_keep_working(tmp_path: Path, make: Make) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    rec = make([("a", a, ["*"], []), ("b", b, ["*"], [])])
    rec.poll()
    write(b / "before.txt")
    rec.until_seen_in("b", "before.txt")
    rec.w.remove_bucket("b")
    assert rec.w.bucket_names == ["a"]
    assert emitters(rec) == 1
    write(b / "after.txt")
    write(b / "sub" / "deeper.txt", old=True)
    write(a / "still.txt")  # after b's files: by the time it is seen, theirs would have been
    rec.until_seen_in("a", "still.txt")
    scans = rec.w.stats["scans"]
    rec.w.request_rescan()  # a rescan walks the remaining bucket only
    rec.idle()
    assert rec.w.stats["scans"] == scans + 1
    assert {p for p in rec.pairs if p[0] == "b"} == {("b", "before.txt")}


@pytest.mark.timeout(60)
def test_inbox_events_of_a_removed_bucket_are_dropped(tmp_path: Path, make: Make) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    rec = make([("a", a, ["*"], []), ("b", b, ["*"], [])], settle_s=5.0)
    rec.poll()
    write(b / "late.txt")
    late = str(b / "late.txt")
    # Its close is in the inbox, not yet polled: without the drop it would become a sighting at once.
    assert poll_until(lambda: ("closed", late, "") in list(rec.w._inbox._events), 10)
    rec.w.remove_bucket("b")
    assert rec.poll() == []
    assert rec.w.settling == 0 and rec.w.stats["events"] >= 1


@pytest.mark.timeout(60)
def test_settling_file_of_a_removed_bucket_is_dropped(tmp_path: Path, make: Make) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    rec = make([("a", a, ["*"], []), ("b", b, ["*"], [])], settle_s=0.3)
    rec.poll()
    b.mkdir(exist_ok=True)
    fd = os.open(b / "open.log", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"abc")
        rec.until(lambda: rec.w.settling == 1, "open.log to start settling")
        rec.w.remove_bucket("b")
        rec.until(lambda: rec.w.settling == 0, "the removed bucket's settling file to be dropped")
        rec.w.request_rescan()
        rec.idle()
        assert not rec.of("open.log")
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_adding_or_removing_the_wrong_bucket_raises_and_changes_nothing(tmp_path: Path, make: Make) -> None:
    rec = make()
    rec.poll()
    with pytest.raises(ValueError, match="bucket 'in' already exists"):
        rec.w.add_bucket("in", tmp_path / "other", ["*"], [])
    with pytest.raises(ValueError, match="already the root of bucket 'in'"):
        rec.w.add_bucket("again", tmp_path / "x" / ".." / "in", ["*"], [])
    with pytest.raises(ValueError, match="no bucket named 'nope'"):
        rec.w.remove_bucket("nope")
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(OSError):
        rec.w.add_bucket("file", tmp_path / "a_file", ["*"], [])
    assert rec.w.bucket_names == ["in"]
    assert emitters(rec) == 1
    write(tmp_path / "in" / "ok.txt")
    rec.until_seen("ok.txt")


@pytest.mark.timeout(60)
def test_bucket_added_removed_and_added_again(tmp_path: Path, make: Make) -> None:
    rec = make(settle_s=5.0)
    rec.poll()
    more = tmp_path / "more"
    rec.w.add_bucket("more", more, ["*"], [])
    rec.poll()
    write(more / "one.txt")
    rec.until_seen_in("more", "one.txt", timeout=4.0)
    rec.w.remove_bucket("more")
    rec.w.add_bucket("more", more, ["*.txt"], [])
    assert rec.w.bucket_names == ["in", "more"] and emitters(rec) == 2
    write(more / "two.txt")
    rec.until_seen_in("more", "two.txt", timeout=4.0)  # a closed event: the new watch is live
    rec.idle()
    assert len([s for s in rec.seen if s.relpath == "one.txt"]) == 2  # found again by the new bucket's scan


@pytest.mark.timeout(60)
def test_buckets_added_and_removed_before_start(tmp_path: Path, make: Make) -> None:
    rec = make(start=False)
    rec.w.add_bucket("more", tmp_path / "more", ["*"], [])
    rec.w.remove_bucket("in")
    assert rec.w.bucket_names == ["more"]
    assert not (tmp_path / "more").exists()  # only registered: start() creates it
    rec.w.start()
    assert emitters(rec) == 1
    write(tmp_path / "more" / "m.txt")
    write(tmp_path / "in" / "gone.txt")
    rec.until_seen_in("more", "m.txt")
    rec.idle()
    assert rec.pairs == {("more", "m.txt")}


@pytest.mark.timeout(60)
def test_polling_observer_watches_an_added_bucket(tmp_path: Path, make: Make) -> None:
    rec = make(polling=True)
    rec.poll()
    write(tmp_path / "nfs" / "pre.txt", old=True)
    rec.w.add_bucket("nfs", tmp_path / "nfs", ["*"], [])
    rec.until_seen_in("nfs", "pre.txt")
    write(tmp_path / "nfs" / "later.txt", b"remote")
    rec.until_seen_in("nfs", "later.txt", timeout=15.0)
    rec.w.remove_bucket("nfs")
    write(tmp_path / "nfs" / "removed.txt")
    write(tmp_path / "in" / "in.txt")
    rec.until_seen_in("in", "in.txt", timeout=15.0)
    rec.w.request_rescan()
    rec.idle()
    assert ("nfs", "removed.txt") not in rec.pairs


@pytest.mark.timeout(60)
def test_nested_bucket_added_then_removed_takes_its_directory_and_gives_it_back(
    tmp_path: Path, make: Make
) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    write(inner / "pre.txt", old=True)
    rec = make([("outer", outer, ["*"], [])])
    rec.until_seen_in("outer", "inner/pre.txt")
    rec.w.add_bucket("inner", inner, ["*"], [])
    rec.until_seen_in("inner", "pre.txt")
    write(inner / "i.txt")
    write(outer / "o.txt")
    rec.until_seen_in("inner", "i.txt")
    rec.until_seen_in("outer", "o.txt")
    rec.w.request_rescan()
    rec.idle()
    assert ("outer", "inner/i.txt") not in rec.pairs
    count = len(rec.seen)
    rec.w.remove_bucket("inner")  # the outer bucket owns the directory again and scans it
    rec.until_seen_in("outer", "inner/i.txt")
    write(inner / "back.txt")
    rec.until_seen_in("outer", "inner/back.txt")
    rec.idle()
    assert all(s.bucket == "outer" for s in rec.seen[count:])


@pytest.mark.timeout(60)
def test_settling_file_goes_to_a_bucket_added_inside_its_own(tmp_path: Path, make: Make) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    rec = make([("outer", outer, ["*"], [])], settle_s=0.3)
    rec.poll()
    fd = os.open(inner / "open.log", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"abc")
        rec.until(lambda: rec.w.settling == 1, "open.log to start settling under the outer bucket")
        rec.w.add_bucket("inner", inner, ["*"], [])
        rec.until_seen_in("inner", "open.log")
        rec.idle()
        assert ("outer", "inner/open.log") not in rec.pairs
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
def test_nested_bucket_removed_and_added_back_before_a_poll_keeps_its_files(
    tmp_path: Path, make: Make
) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    write(inner / "sub" / "pre.txt", old=True)
    rec = make([("outer", outer, ["*"], []), ("inner", inner, ["*"], [])])
    rec.until_seen_in("inner", "sub/pre.txt")
    rec.idle()
    rec.w.remove_bucket("inner")  # queues the outer bucket's walk of inner/ ...
    rec.w.add_bucket("inner", inner, ["*"], [])  # ... which must not run now that inner/ is a bucket again
    rec.idle()  # (no request_rescan(): the outer bucket's full scan would replace that walk anyway)
    assert {p for p in rec.pairs if p[0] == "outer"} == set()
    assert len(rec.of("sub/pre.txt")) == 2  # found again by the re-added bucket's own scan
