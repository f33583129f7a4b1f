"""watchdog plumbing for the watcher: the thread-safe inbox, the overflow hook and the observer's lifecycle.

watchdog calls us from its own threads. Nothing here does I/O on those threads: the event handler appends
`(kind, path, dest path)` to a deque and wakes the loop; the log handler that hears "Inotify queue
overflowed" sets a flag and wakes the loop. The loop takes both in `Watcher.poll()`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections import deque
from collections.abc import Callable

from loguru import logger
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

#: Where and how watchdog 7.1 reports a kernel queue overflow (`InotifyFD.handle_event` in inotify_c.py:
#: "Inotify queue overflowed; filesystem events were lost"); the event handler itself hears nothing.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
OVERFLOW_MESSAGE = "Inotify queue overflowed"

#: The default inotify mask sends about six events per file and overflows under bursts; these are enough.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]
#: A polling observer never sees a close, and an in-place rewrite shows only as "modified"; a snapshot diff
#: reports one such event per change, not one per write, so it is cheap to take there.
POLLING_EVENT_FILTER: list[type[FileSystemEvent]] = [*EVENT_FILTER, FileModifiedEvent]

#: (kind, path, dest path): kind is watchdog's `event_type` ("closed", "created", "moved", "modified"),
#: prefixed with "dir_" for directories; dest path is "" except for moves.
RawEvent = tuple[str, str, str]


class Inbox:
    """The hand-off from watchdog's threads to the loop: a deque, an overflow flag and a coalesced wake."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._events: deque[RawEvent] = deque()  # deque append/popleft are atomic: no lock needed
        self._wake_sent = False
        self._overflow = threading.Event()

    # Observer threads.

    def push(self, event: RawEvent) -> None:
        """Queue one event and wake the loop if no wake is outstanding."""
        self._events.append(event)
        # take() clears the flag *before* draining, so an event appended after a drain started always finds
        # it clear and wakes the loop again: one wake per drain, never a lost one.
        if not self._wake_sent:
            self._wake_sent = True
            self._wake_safely()

    def overflowed(self) -> None:
        """Note that the kernel dropped events."""
        self._overflow.set()
        self._wake_safely()

    def _wake_safely(self) -> None:
        try:
            self._wake()
        except Exception:  # raising here would kill watchdog's thread
            self._wake_sent = False
            logger.opt(exception=True).debug("watcher: wake() failed")

    # Loop thread.

    def take(self) -> list[RawEvent]:
        """Everything queued so far (bounded by the length now, so a flood cannot keep the loop here)."""
        self._wake_sent = False
        return [self._events.popleft() for _ in range(len(self._events))]

    def take_overflow(self) -> bool:
        """Whether an overflow was reported since the last call."""
        if not self._overflow.is_set():
            return False
        self._overflow.clear()
        return True

    def __bool__(self) -> bool:
        return bool(self._events) or self._overflow.is_set()


class _EventSink(FileSystemEventHandler):
    """Runs in the observer thread: notes the event for the loop and does nothing else."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__()
        self._inbox = inbox

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = f"dir_{event.event_type}" if event.is_directory else event.event_type
        self._inbox.push((kind, os.fsdecode(event.src_path), os.fsdecode(event.dest_path)))


class _OverflowLogHandler(logging.Handler):
    """Hears watchdog's overflow log line, the only signal it gives that events were lost."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__(logging.WARNING)
        self._inbox = inbox

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith(OVERFLOW_MESSAGE):
            self._inbox.overflowed()


class Observation:
    """One watchdog observer watching every bucket root recursively, feeding an `Inbox`.

    Roots can be watched and unwatched one at a time while it runs (`watch`, `unwatch`): one `ObservedWatch`
    per root, scheduled and unscheduled on the running observer.
    """

    def __init__(self, inbox: Inbox, *, polling: bool) -> None:
        self.polling = polling
        self._sink = _EventSink(inbox)
        self._log_handler = _OverflowLogHandler(inbox)
        self._observer: BaseObserver | None = None
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int] | None]] = {}  # root -> watch, dev/ino

    def start(self, roots: list[str]) -> None:
        """Hook the overflow log line, then start watching. An exhausted inotify limit degrades to polling."""
        watchdog_log = logging.getLogger(OVERFLOW_LOGGER)
        # If the logger's level (or the root's) is above WARNING, the overflow line is dropped before any
        # handler sees it, and lost events would wait for the timer rescan.
        if watchdog_log.getEffectiveLevel() > logging.WARNING:
            watchdog_log.setLevel(logging.WARNING)
        watchdog_log.addHandler(self._log_handler)
        try:
            try:
                self._observer = self._start(roots)
            except OSError as exc:
                # ENOSPC/EMFILE: fs.inotify.max_user_watches / max_user_instances. Degrade, loudly.
                if self.polling or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise
                logger.error("watcher: inotify limit reached ({}); falling back to the polling observer", exc)
                self.polling = True
                self._observer = self._start(roots)
        except BaseException:
            watchdog_log.removeHandler(self._log_handler)
            raise

    def _start(self, roots: list[str]) -> BaseObserver:
        observer = PollingObserver() if self.polling else _native_observer()
        for root in roots:
            self._schedule(observer, root)
        try:
            observer.start()
        except OSError:
            observer.unschedule_all()  # emitters started before the failing one are still running
            raise
        return observer

    def _schedule(self, observer: BaseObserver, root: str) -> None:
        watch = observer.schedule(
            self._sink,
            root,
            recursive=True,
            event_filter=POLLING_EVENT_FILTER if self.polling else EVENT_FILTER,
        )
        try:
            st = os.stat(root)
            self._watches[root] = (watch, (st.st_dev, st.st_ino))
        except OSError:
            self._watches[root] = (watch, None)

    def watch(self, root: str) -> None:
        """Watch one more root on the running observer.

        The observer is not restarted: the other roots' watches, and the events they have queued, are left
        alone. watchdog sets the new watch up before `schedule()` returns (the emitter's `on_thread_start`
        runs in the calling thread), so a file written after this call is reported. Raises `OSError` if the
        root cannot be watched (e.g. the inotify watch limit), with nothing left scheduled. Before `start()`
        it does nothing: `start()` watches the roots it is given.
        """
        if self._observer is not None:
            self._schedule(self._observer, root)

    def unwatch(self, root: str) -> None:
        """Stop watching `root` and join its emitter thread; the other roots' watches are left alone.

        watchdog looks a watch's handlers up when it dispatches, so events of this root still in its own
        queue are dropped; those already in the `Inbox` are the watcher's to ignore.
        """
        entry = self._watches.pop(root, None)
        observer = self._observer
        if entry is None or observer is None:
            return
        # KeyError: not scheduled any more (ensure_watched() unscheduled it, then failed to watch it again).
        with contextlib.suppress(KeyError):
            observer.unschedule(entry[0])

    def ensure_watched(self, root: str) -> None:
        """Watch `root` again if it was deleted (its emitter stopped) or replaced (another inode) and is back.

        Raises `OSError` if it cannot be watched; does nothing if it does not exist.
        """
        observer = self._observer
        if observer is None or root not in self._watches:
            return
        try:
            st = os.stat(root)
        except OSError:
            return
        watch, watched_id = self._watches[root]
        alive = any(e.watch == watch and e.is_alive() for e in list(observer.emitters))
        if alive and watched_id == (st.st_dev, st.st_ino):
            return
        logger.warning("watcher: bucket root {} was deleted or replaced; watching it again", root)
        with contextlib.suppress(KeyError):
            observer.unschedule(watch)
        self._schedule(observer, root)

    def stop(self) -> None:
        """Stop the observer and wait (bounded) for its threads; unhook the log handler."""
        observer, self._observer = self._observer, None
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._log_handler)
        if observer is None:
            return
        observer.stop()
        with contextlib.suppress(RuntimeError):  # never started
            observer.join(timeout=5)
        if observer.is_alive():
            logger.warning("watcher: observer thread did not stop within 5 s")


def _native_observer() -> BaseObserver:
    """inotify with full move events where available: a file renamed in from outside every bucket (the usual
    atomic drop) then arrives as a move with an empty source, ready at once, instead of as "created", which
    has to wait out the settle window because a writer may still hold it open."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)
