"""A bucket that races the `[dirs:PATH]` search: while rg or grep runs, a thread keeps exchanging a file
with a symlink to a secret outside the bucket (renameat2 RENAME_EXCHANGE), a subdirectory with a symlink
to a directory outside, and the searched directory itself with a symlink out. Whatever the tools follow,
no text from outside may reach the section: the tools start in the checked descriptor and every line
they print is checked against the bucket (before the fix, ripgrep leaked in about 6 runs of 10)."""

from __future__ import annotations

import ctypes
import os
import shutil
import threading
from pathlib import Path

import pytest

from protocol.messages import ContextRules, DirsRule, NoteSettings
from worker.pipeline.context import ContextCollector
from worker.tools.breaker import Breakers
from worker.tools.dirgrep import DirectoryGrep

pytestmark = pytest.mark.timeout(120)

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
#: Searches that ran (the searched directory is a symlink half the time: those are refused) and attempts.
_SEARCHED = 30
_ATTEMPTS = 3000


def _exchanger() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        return libc.renameat2
    except AttributeError:
        pytest.skip("no renameat2 in this libc")


@pytest.mark.parametrize("tool", ["rg", "grep"])
def test_swapping_files_and_directories_for_symlinks_leaks_nothing(tmp_path: Path, tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed here")
    renameat2 = _exchanger()
    root = tmp_path / "bucket"
    d = root / "d"
    (d / "sub").mkdir(parents=True)
    for i in range(10):
        (d / f"f{i}.txt").write_text("TODO inside\n" * 3)
    (d / "sub" / "x.txt").write_text("TODO inside sub\n")
    (tmp_path / "secret.txt").write_text("TODO secret\n" * 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.txt").write_text("TODO secret dir\n")
    (d / "zz").symlink_to(tmp_path / "secret.txt")
    (d / "zsub").symlink_to(tmp_path / "out")
    (root / "dl").symlink_to(tmp_path / "out")
    pairs = [(d / "f5.txt", d / "zz"), (d / "sub", d / "zsub"), (d, root / "dl")]
    encoded = [(os.fsencode(a), os.fsencode(b)) for a, b in pairs]
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for a, b in encoded:
                renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)

    grep = DirectoryGrep(Breakers(), tools=(tool, "python"))
    rules = ContextRules(key="k", dirs=[DirsRule(path="d", patterns=["TODO"])])
    notes = NoteSettings(context_cache_s=0)
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    seen: list[str] = []
    searched = 0
    try:
        for _ in range(_ATTEMPTS):
            got = ContextCollector(grep).collect(str(root), "x", rules, notes)
            seen += [line.text for section in got.greps for line in section.lines]
            searched += got.facts.grep_dirs
            if searched >= _SEARCHED:
                break
    finally:
        stop.set()
        swapper.join()
    assert searched and all(text.startswith("TODO inside") for text in seen)
