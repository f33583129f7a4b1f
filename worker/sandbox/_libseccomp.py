"""A minimal ctypes binding to libseccomp: build a filter, add rules, load it.

Loaded by soname ("libseccomp.so.2"), never through ctypes.util.find_library (which runs ldconfig or gcc:
35 ms, and it fails in minimal roots). Rules are added with seccomp_rule_add_array, which takes the
comparisons as an array of structs: seccomp_rule_add is variadic and passes them by value, which ctypes cannot
describe portably.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass

SONAME = "libseccomp.so.2"

SCMP_ACT_ALLOW = 0x7FFF0000

# enum scmp_compare
SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7

# enum scmp_filter_attr
SCMP_FLTATR_CTL_TSYNC = 4
SCMP_FLTATR_API_SYSRAWRC = 9

#: What seccomp_syscall_resolve_name returns for a name it does not know.
NR_SCMP_ERROR = -1


def act_errno(err: int) -> int:
    """SCMP_ACT_ERRNO(err): the syscall returns -1 with errno set to err."""
    return 0x00050000 | (err & 0xFFFF)


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: compare syscall argument `arg` with `op` (for MASKED_EQ: datum_a is the mask)."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class Cmp:
    """One argument comparison, in Python terms."""

    arg: int
    op: int
    a: int
    b: int = 0


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libseccomp, loaded once (and before Landlock: later loads would need read access to it)."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(SONAME, use_errno=True)
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.restype = None
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_attr_set.restype = ctypes.c_int
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(ArgCmp),
        ]
        lib.seccomp_rule_add_array.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_load.restype = ctypes.c_int
        _lib = lib
    return _lib


def resolve(name: str) -> int | None:
    """The native syscall number for `name`, or None when this architecture has no such syscall."""
    nr = int(library().seccomp_syscall_resolve_name(name.encode()))
    # Negative numbers are libseccomp's pseudo-syscalls (a syscall other architectures have): skip them too.
    return None if nr < 0 else nr


def _check(ret: int, what: str) -> None:
    if ret < 0:  # libseccomp returns -errno
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")


class Filter:
    """A filter under construction: default ALLOW, then rules; load() installs it."""

    def __init__(self) -> None:
        self._lib = library()
        ctx = self._lib.seccomp_init(SCMP_ACT_ALLOW)
        if not ctx:
            raise OSError(0, "seccomp_init failed")
        self._ctx: int = ctx
        # Report the kernel's own errno from seccomp_load instead of a generic ECANCELED (libseccomp >= 2.5).
        self._lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_API_SYSRAWRC, 1)

    def set_tsync(self) -> None:
        """Install the filter in every thread of the process at once (SECCOMP_FILTER_FLAG_TSYNC)."""
        _check(self._lib.seccomp_attr_set(self._ctx, SCMP_FLTATR_CTL_TSYNC, 1), "seccomp_attr_set(TSYNC)")

    def add(self, action: int, nr: int, cmps: Sequence[Cmp] = ()) -> None:
        """Add one rule: `action` when syscall `nr` is called and every comparison holds."""
        array = (ArgCmp * max(1, len(cmps)))(*(ArgCmp(c.arg, c.op, c.a, c.b) for c in cmps))
        _check(self._lib.seccomp_rule_add_array(self._ctx, action, nr, len(cmps), array), f"rule for {nr}")

    def load(self) -> None:
        """Install the filter (libseccomp sets no_new_privs first, as an unprivileged filter requires)."""
        _check(self._lib.seccomp_load(self._ctx), "seccomp_load")

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0
