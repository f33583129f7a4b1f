"""The libc calls the sandbox needs that Python 3.11 does not wrap (prctl, unshare, raw syscalls).

Everything goes through one `CDLL(None, use_errno=True)` handle: the C library is already mapped, so this
costs nothing and needs no file access (it keeps working under Landlock).
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

CLONE_NEWNET = 0x40000000


def errno_error(what: str) -> OSError:
    """An OSError for the errno the last ctypes call left, its message naming the call."""
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); raises OSError on -1. Arguments are passed as unsigned longs (prctl is variadic)."""
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    ret: int = _libc.prctl(ctypes.c_int(option), *args)
    if ret == -1:
        raise errno_error(f"prctl({option})")
    return ret


def get_pdeathsig() -> int:
    """The parent-death signal of the calling thread (PR_GET_PDEATHSIG writes it through a pointer)."""
    sig = ctypes.c_int(0)
    if _libc.prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(sig), ctypes.c_ulong(0), ctypes.c_ulong(0)):
        raise errno_error("prctl(PR_GET_PDEATHSIG)")
    return sig.value


def unshare(flags: int) -> None:
    """unshare(2) (os.unshare only arrives in Python 3.12)."""
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        raise errno_error("unshare")


def syscall(number: int, *args: object) -> int:
    """A raw syscall; returns its result (-1 with ctypes errno set on failure). Integers go as longs."""
    conv = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return int(_libc.syscall(ctypes.c_long(number), *conv))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset_zero() -> None:
    """Clear the calling thread's effective, permitted and inheritable capability sets (capset(2), v3)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)  # pid 0: the calling thread
    data = (_CapData * 2)()  # version 3 carries 64 capability bits as two 32-bit words; all zero
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise errno_error("capset")


def libc() -> ctypes.CDLL:
    """The shared libc handle, for the few callers (tests) that need a call not wrapped here."""
    return _libc
