"""Settle timers: files that may still be written, waiting until size, mtime and inode stay still.

A dict holds the current version and deadline of each path; a heap orders the deadlines. Re-arming a path
only pushes a new heap entry, and entries that no longer agree with the dict are dropped as they surface,
so every operation stays O(log n) however often a busy file changes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

Signature = tuple[int, int, int]  # size, mtime_ns, inode


@dataclass(slots=True)
class Settling(Generic[T]):
    """One path waiting to settle: who owns it (`tag`), the version last seen and when to look again."""

    path: str
    tag: T
    sig: Signature
    due: float


class Settler(Generic[T]):
    """Paths waiting for a settle window, in deadline order."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._entries: dict[str, Settling[T]] = {}
        self._heap: list[tuple[float, str]] = []  # (due, path); stale when it disagrees with _entries

    def __len__(self) -> int:
        return len(self._entries)

    def watch(self, path: str, tag: T, sig: Signature, now: float) -> None:
        """Start (or restart) the window for `path`, unless it is already settling on this same version."""
        entry = self._entries.get(path)
        if entry is not None and entry.sig == sig:
            return  # keep the running timer: the file has not changed since we last looked
        due = now + self.settle_s
        self._entries[path] = Settling(path, tag, sig, due)
        heapq.heappush(self._heap, (due, path))

    def discard(self, path: str) -> None:
        """Forget `path` (emitted, vanished or renamed away)."""
        self._entries.pop(path, None)

    def next_due(self) -> float | None:
        """When the earliest window ends, or None if nothing is settling."""
        while self._heap:
            due, path = self._heap[0]
            entry = self._entries.get(path)
            if entry is not None and entry.due == due:
                return due
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> list[Settling[T]]:
        """Every entry whose window has ended by `now`. The caller re-stats each and then either forgets it
        (`discard`) or re-arms it (`rearm`); a list, not a generator, so a re-armed entry (settle_s == 0)
        cannot come round again in the same pass."""
        ready: list[Settling[T]] = []
        while self._heap and self._heap[0][0] <= now:
            due, path = heapq.heappop(self._heap)
            entry = self._entries.get(path)
            if entry is not None and entry.due == due:
                ready.append(entry)
        return ready

    def rearm(self, entry: Settling[T], sig: Signature, now: float) -> None:
        """The file changed since `entry` was armed: wait a full window again from `now`."""
        entry.sig = sig
        entry.due = now + self.settle_s
        heapq.heappush(self._heap, (entry.due, entry.path))
