"""Fixtures every test shares: a short-pathed scratch dir, and a check that no process of ours outlives a
test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import poll_until


def _ours(marker: str) -> list[psutil.Process]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["pid"] != me and marker in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory with a short path (unix socket paths are limited to 107 bytes), on tmpfs when the
    test is marked `tmpfs` and /dev/shm exists. After the test, every process whose command line names this
    directory must be gone: a leftover worker or coordinator fails the test, then is killed."""
    base = "/dev/shm" if request.node.get_closest_marker("tmpfs") and os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="obt-", dir=base))
    try:
        yield path
        leftovers: list[psutil.Process] = []

        def none_left() -> bool:
            leftovers[:] = _ours(str(path))
            return not leftovers

        if not poll_until(none_left, timeout=10):
            described = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in leftovers if p.is_running()]
            for proc in leftovers:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            pytest.fail(f"processes outlived the test: {described}")
    finally:
        shutil.rmtree(path, ignore_errors=True)
