"""Layer "scratch": a private working directory that is also HOME, TMPDIR and `tempfile`'s directory.

The dir must already exist (the coordinator makes one per worker), be a real directory (not a symlink) and
belong to us; its mode is forced to 0700 so no other user can read what a job unpacks there.
"""

from __future__ import annotations

import os
import stat
import tempfile

from protocol.sandbox import SandboxSpec
from worker.sandbox.errors import LayerUnavailable

MODE = 0o700


def apply(spec: SandboxSpec) -> str:
    """Check the scratch dir, fix its mode, chdir into it and make it the temp dir."""
    path = spec.scratch
    if not path:
        raise LayerUnavailable("no scratch directory in the spec")
    try:
        st = os.lstat(path)  # lstat: a symlink could point anywhere, so it is refused, not followed
    except OSError as exc:
        raise LayerUnavailable(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise LayerUnavailable(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise LayerUnavailable(f"{path} belongs to uid {st.st_uid}, not to us ({os.geteuid()})")
    fixed = ""
    if stat.S_IMODE(st.st_mode) != MODE:
        os.chmod(path, MODE)
        fixed = f" (mode was {stat.S_IMODE(st.st_mode):o})"
    os.chdir(path)
    tempfile.tempdir = path
    # The env layer sets these too; repeated here so the scratch dir holds even when "env" is disabled.
    os.environ["HOME"] = path
    os.environ["TMPDIR"] = path
    return f"{path}, mode 700{fixed}"


def check(spec: SandboxSpec) -> str | None:
    """None when cwd, HOME, TMPDIR and tempfile all point at the scratch dir and it is still private."""
    path = spec.scratch
    real = os.path.realpath(path)
    if os.getcwd() != real:
        return f"cwd is {os.getcwd()}, not {real}"
    for var in ("HOME", "TMPDIR"):
        if os.environ.get(var) != path:
            return f"{var} is {os.environ.get(var)!r}, not {path}"
    if tempfile.gettempdir() != path:
        return f"tempfile uses {tempfile.gettempdir()}, not {path}"
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return None if mode == MODE else f"mode is {mode:o}, not 700"
