"""Removing a hostile scratch dir: nothing followed, nothing blocked on, off the caller's thread."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from coordinator import janitor
from coordinator.janitor import Janitor, remove_tree
from tests.harness import wait_for

pytestmark = pytest.mark.timeout(20)


def test_links_are_removed_not_followed_and_fifos_never_opened(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("must survive")
    scratch = tmp_path / "scratch"
    (scratch / "a" / "b").mkdir(parents=True)
    (scratch / "a" / "b" / "f.txt").write_text("x")
    (scratch / "link-to-outside").symlink_to(outside)
    (scratch / "a" / "link-file").symlink_to(outside / "keep.txt")
    os.mkfifo(scratch / "a" / "pipe")  # an open() of this would block forever
    assert remove_tree(scratch)
    assert not scratch.exists()
    assert (outside / "keep.txt").read_text() == "must survive"


def test_a_fifo_swapped_in_for_a_directory_is_refused_at_once(tmp_path: Path) -> None:
    # What a racing process could do between "it is a directory" and "open it": the open must not block.
    os.mkfifo(tmp_path / "d")
    parent = os.open(tmp_path, janitor.DIR_FLAGS)
    try:
        with pytest.raises(NotADirectoryError):
            os.open("d", janitor.DIR_FLAGS, dir_fd=parent)
    finally:
        os.close(parent)


def test_nesting_past_the_cap_is_left_not_recursed_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(janitor, "MAX_DEPTH", 3)
    deep = tmp_path / "s" / "1" / "2" / "3" / "4"
    deep.mkdir(parents=True)
    assert not remove_tree(tmp_path / "s")
    assert (tmp_path / "s" / "1" / "2" / "3").is_dir()  # left for a human, said so in the log


def test_the_janitor_removes_a_tree_deeper_than_the_cap_piece_by_piece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(janitor, "MAX_DEPTH", 3)
    work = Janitor(tmp_path / "trash")
    work.start()
    deep = tmp_path / "s"
    (deep / "1" / "2" / "3" / "4" / "5" / "6" / "7").mkdir(parents=True)
    (deep / "1" / "2" / "3" / "4" / "5" / "6" / "7" / "f").write_text("x")
    work.discard(deep)
    wait_for(lambda: not any((tmp_path / "trash").iterdir()), 10, "the deep tree to be gone")
    work.stop()


def test_an_unreadable_directory_is_opened_after_its_rights_are_given_back(tmp_path: Path) -> None:
    # Root reads a 0o000 directory anyway: the repair matters to a coordinator that is not root, so the
    # check runs as one (a forked child that drops to nobody) when the test itself is root.
    base = Path(tempfile.mkdtemp(prefix="obj-"))  # pytest's tmp_path is 0700 root: nobody could reach it
    if os.geteuid() == 0:
        os.chown(base, 65534, 65534)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            locked = base / "s" / "locked"
            locked.mkdir(parents=True)
            (locked / "f").write_text("x")
            locked.chmod(0)
            code = 0 if remove_tree(base / "s") else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert not (base / "s").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_janitor_takes_a_dir_away_at_once_and_removes_it_in_the_background(tmp_path: Path) -> None:
    trash = tmp_path / "trash"
    work = Janitor(trash)
    work.start()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for i in range(200):
        (scratch / f"f{i}").write_text("x")
    work.discard(scratch)
    assert not scratch.exists()  # renamed away synchronously
    wait_for(lambda: not any(trash.iterdir()), 10, "the trash to be emptied")
    work.discard(tmp_path / "never-existed")  # nothing to do, no error
    work.stop()
