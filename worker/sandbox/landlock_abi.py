"""Landlock's kernel interface: the three syscalls, the access-right bits, and what each ABI version knows.

The syscall numbers are the same on every architecture that has Landlock (444-446). A ruleset must only
"handle" rights its kernel knows, and the ruleset attribute struct grows with the ABI: handled_access_fs
(ABI 1), handled_access_net (ABI 4), scoped (ABI 6).
"""

from __future__ import annotations

import ctypes

from worker.sandbox import _libc

SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1

# Filesystem rights (linux/landlock.h).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
#: The only rights a rule on a non-directory may carry (the kernel refuses the others with EINVAL).
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel struct is __attribute__((packed)): 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def handled_fs(abi: int) -> int:
    """Every filesystem right ABI `abi` knows."""
    rights = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def handled_net(abi: int) -> int:
    """The network rights ABI `abi` knows (TCP bind and connect from ABI 4)."""
    return NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0


def scoped(abi: int) -> int:
    """The scopes ABI `abi` knows (abstract unix sockets and signals from ABI 6)."""
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def attr_size(abi: int) -> int:
    """How much of RulesetAttr to pass: older kernels refuse a struct with fields they do not know."""
    return 24 if abi >= 6 else 16 if abi >= 4 else 8


def features(abi: int) -> str:
    """What a ruleset for ABI `abi` covers, e.g. "fs, tcp, scoped"."""
    parts = ["fs"]
    if handled_net(abi):
        parts.append("tcp")
    if scoped(abi):
        parts.append("scoped")
    return ", ".join(parts)


def abi_version() -> int:
    """The Landlock ABI version of this kernel; raises OSError (ENOSYS, EOPNOTSUPP) when there is none."""
    abi = _libc.syscall(SYS_CREATE_RULESET, None, 0, CREATE_RULESET_VERSION)
    if abi < 0:
        raise _libc.errno_error("landlock_create_ruleset")
    return abi


def create_ruleset(abi: int) -> int:
    """A new ruleset fd handling everything ABI `abi` knows."""
    attr = RulesetAttr(handled_fs(abi), handled_net(abi), scoped(abi))
    fd = _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), attr_size(abi), 0)
    if fd < 0:
        raise _libc.errno_error("landlock_create_ruleset")
    return fd


def add_path_rule(ruleset_fd: int, path_fd: int, rights: int) -> None:
    """Allow `rights` beneath the file or directory open as `path_fd`."""
    attr = PathBeneathAttr(rights, path_fd)
    if _libc.syscall(SYS_ADD_RULE, ruleset_fd, RULE_PATH_BENEATH, ctypes.byref(attr), 0) != 0:
        raise _libc.errno_error("landlock_add_rule")


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on the calling thread (and every thread and process it starts from now on)."""
    if _libc.syscall(SYS_RESTRICT_SELF, ruleset_fd, 0) != 0:
        raise _libc.errno_error("landlock_restrict_self")
