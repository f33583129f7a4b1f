"""Open an input file only if it is a plain regular file, without following symlinks or blocking.

Buckets are written to by other people's programs, so the path we are handed may by now be a symlink to
somewhere secret, a FIFO that would block `open()` forever, a device node whose open has side effects,
or gone. The checks run in two rounds:

1. `lstat` and refuse anything but a regular file before opening, so device nodes and FIFOs are never
   opened at all and an oversized file is never touched;
2. `open` with O_NOFOLLOW (a symlink swapped in meanwhile fails with ELOOP) and O_NONBLOCK (a FIFO swapped
   in meanwhile cannot block us), then `fstat` the descriptor and check that it is still the same inode,
   still regular and still within the limit. From here on we only use the descriptor, so the path can
   change under us without affecting what we read.

O_NOFOLLOW guards only the last path component; directories above it belong to the bucket's owner.

A file some program still holds an exclusive lock on (`flock` or a POSIX write lock: what writers that lock
while they write use) is not read half-written: that is a retryable FileAccess (`ELOCKED`), so the
coordinator tries it again with backoff until the writer lets go or the attempts run out. Testing for a lock
takes a shared one for a moment, and never waits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from worker.pipeline.errors import FileAccessError, FileTooLargeError, errno_name

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


Version = tuple[int, int, int]  # size, mtime_ns, inode


def open_regular(path: str, max_bytes: int, expect: Version | None = None) -> tuple[int, os.stat_result]:
    """Open `path` read-only if it is a regular file of at most `max_bytes` bytes.

    Returns the descriptor (the caller closes it) and its `fstat`. Raises `FileAccessError` for a missing,
    unreadable or non-regular path (symlink, directory, FIFO, device, socket), or one that is no longer the
    `expect`ed version, and `FileTooLargeError` for a file over the limit.
    """
    try:
        before = os.lstat(path)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    _check(path, before, max_bytes)

    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            # Replaced between lstat and open (e.g. a writer's rename-into-place); a retry sees the new file.
            raise FileAccessError(f"{path} was replaced while being opened", code="ECHANGED", retryable=True)
        _check(path, st, max_bytes)
        if expect is not None and (st.st_size, st.st_mtime_ns, st.st_ino) != expect:
            # The job is about one version; the newer one was sighted (or will be) and is a job of its own.
            raise FileAccessError(
                f"{path} changed since it was seen; the newer version is processed as its own job",
                code="ECHANGED",
            )
        _check_unlocked(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check(path: str, st: os.stat_result, max_bytes: int) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise FileAccessError(f"{path} is a symlink; symlinks are not followed", code="ELOOP")
    if not stat.S_ISREG(mode):
        raise FileAccessError(f"{path} is {_kind(mode)}, not a regular file", code="ENOTREG")
    if st.st_size > max_bytes:
        raise FileTooLargeError(path, st.st_size, max_bytes)


def _check_unlocked(path: str, fd: int) -> None:
    """Raise a retryable FileAccessError if a writer holds an exclusive lock on the file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked(path, "flock") from None
    except OSError:
        pass  # a filesystem without flock: nothing to learn
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fcntl(2) record locks (F_SETLK, F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise _locked(path, "a POSIX write lock") from None
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def _locked(path: str, how: str) -> FileAccessError:
    return FileAccessError(
        f"{path} is locked by a writer ({how}); retried later", code="ELOCKED", retryable=True
    )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return f"of unknown type (mode {stat.S_IFMT(mode):#o})"


def _access_error(path: str, exc: OSError) -> FileAccessError:
    code = errno_name(exc)
    if exc.errno == errno.ENOENT:
        return FileAccessError(f"{path}: file vanished before processing", code=code)
    if exc.errno == errno.ELOOP:
        # O_NOFOLLOW on a symlink fails with ELOOP (a symlink swapped in after our lstat).
        return FileAccessError(f"{path} is a symlink; symlinks are not followed", code=code)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FileAccessError(f"{path}: permission denied", code=code)
    return FileAccessError(f"{path}: cannot open: {exc.strerror or exc}", code=code)
