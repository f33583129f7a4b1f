"""Which paths the Landlock ruleset opens up, and with which rights: everything else is denied.

- read-only: the buckets (spec.read), the interpreter's sys.path, the packages already imported (an editable
  install maps them from outside sys.path), /proc, /sys/fs/cgroup and our cgroup dirs, the CPU topology under
  /sys (thread pools size themselves from it) and the few /etc files the C library, Python and a shell read.
  Not /etc as a whole, not /root, /home or /tmp.
- read + execute: the system program and library dirs, the Python installation (a venv's base may live
  under /root, so the prefixes are listed one by one), and spec.execute. Executing a binary needs EXECUTE on
  it and on its ELF interpreter (ld.so); shared libraries are only opened for reading.
- read-write: spec.write and the scratch dir, with every right except EXECUTE: what lands there comes from
  untrusted input and is never a program to run.
- devices: /dev/null read-write (a shell's `> /dev/null` opens it with O_TRUNC, which needs TRUNCATE), and
  /dev/urandom, /dev/random, /dev/zero read-only.
sys.path entries that are "/" or contain the canary are skipped: a worker started from "/" (or with "" on
sys.path) must not open up the whole tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from protocol.sandbox import SandboxSpec
from worker.sandbox.landlock_abi import (
    FS_EXECUTE,
    FS_IOCTL_DEV,
    FS_READ_DIR,
    FS_READ_FILE,
    FS_TRUNCATE,
    FS_WRITE_FILE,
)

READ = FS_READ_FILE | FS_READ_DIR
READ_EXEC = READ | FS_EXECUTE
#: Masked down to what the ABI handles when the ruleset is built.
READ_WRITE = ~FS_EXECUTE & 0xFFFFFFFFFFFFFFFF

SYSTEM_EXEC_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
SYSTEM_READ_DIRS = ("/proc", "/sys/fs/cgroup", "/sys/devices/system/cpu")
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/os-release",
    "/etc/magic",
    "/etc/magic.mime",
)
DEVICES = (
    ("/dev/null", FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV),
    ("/dev/urandom", FS_READ_FILE),
    ("/dev/random", FS_READ_FILE),
    ("/dev/zero", FS_READ_FILE),
)


def _too_broad(path: str, canary: str) -> bool:
    """True for "/" and for any dir that contains the canary: opening it would defeat the sandbox."""
    real = os.path.realpath(path)
    if real == "/":
        return True
    if not canary:
        return False
    canary_real = os.path.realpath(canary)
    return os.path.commonpath([real, canary_real]) == real


def _python_paths() -> list[str]:
    """sys.path, plus the dirs of packages imported from elsewhere (editable installs, .pth tricks)."""
    paths = [entry or os.getcwd() for entry in sys.path if isinstance(entry, str)]
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        mapping = getattr(module, "MAPPING", None)
        if name.startswith("__editable__") and isinstance(mapping, dict):
            paths.extend(str(p) for p in mapping.values())  # setuptools' editable finder
        package_path = getattr(module, "__path__", None)
        if package_path is not None:
            paths.extend(str(p) for p in package_path)
    return paths


def _dedupe(rules: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    merged: dict[str, int] = {}
    for path, rights in rules:
        merged[path] = merged.get(path, 0) | rights
    return list(merged.items())


def rules(spec: SandboxSpec) -> list[tuple[str, int]]:
    """(path, rights) for every path to open up; paths may not exist (the builder skips those)."""
    wanted: list[tuple[str, int]] = []
    wanted += [(path, READ) for path in spec.read]
    wanted += [(path, READ) for path in _python_paths() if path and not _too_broad(path, spec.canary)]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    wanted += [(path, READ_EXEC) for path in sorted(prefixes) if not _too_broad(path, spec.canary)]
    wanted += [(path, READ_EXEC) for path in SYSTEM_EXEC_DIRS]
    wanted += [(path, READ_EXEC) for path in spec.execute]
    wanted += [(path, READ) for path in SYSTEM_READ_DIRS]
    wanted += [(path, READ) for path in spec.cgroup]
    wanted += [(path, FS_READ_FILE) for path in ETC_FILES]
    wanted += list(DEVICES)
    wanted += [(path, READ_WRITE) for path in spec.write]
    if spec.scratch:
        wanted.append((spec.scratch, READ_WRITE))
    return _dedupe(wanted)
