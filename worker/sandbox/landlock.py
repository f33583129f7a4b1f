"""Layer "landlock": the kernel's own filesystem, TCP and scope sandbox, applied by the worker to itself.

Builds a ruleset handling every right the running ABI knows (files from ABI 1, REFER 2, TRUNCATE 3, TCP bind
and connect 4 with no TCP rule at all so every TCP port is refused, IOCTL_DEV 5, and from ABI 6 the
abstract-unix-socket and signal scopes, so a worker can neither signal nor reach the coordinator or the other
workers), opens up the paths `landlock_paths.rules` lists and enforces it. It does not cover UDP, nor
connecting to path-based unix sockets (the worker's own `ipc://` connection relies on that).

A Landlock domain binds only the calling thread and the threads and processes it starts afterwards, so this
refuses to run while another thread exists. landlock_restrict_self needs no_new_privs (set just before) since
the capabilities are gone by then.
"""

from __future__ import annotations

import errno
import os
import stat

from protocol.sandbox import SandboxSpec
from worker.sandbox import landlock_abi as abi_
from worker.sandbox import procfs
from worker.sandbox.errors import LayerUnavailable, describe
from worker.sandbox.landlock_paths import rules
from worker.sandbox.probes import NetProbe

#: The ABI the domain was built with, recorded by apply() so check() knows whether TCP is covered.
_applied_abi = 0


def apply(spec: SandboxSpec) -> str:
    """Build and enforce the ruleset; the detail names the ABI and what it covers."""
    global _applied_abi
    try:
        abi = abi_.abi_version()
    except OSError as exc:
        raise LayerUnavailable(f"Landlock unavailable: {exc.strerror or exc}") from exc
    threads = procfs.thread_count()
    if threads > 1:
        raise LayerUnavailable(f"threads already running ({threads}): a Landlock domain binds one thread")
    handled = abi_.handled_fs(abi)
    added = absent = 0
    try:
        ruleset = abi_.create_ruleset(abi)
    except OSError as exc:
        raise LayerUnavailable(describe(exc)) from exc
    try:
        for path, rights in rules(spec):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:  # absent, or not reachable for us: nothing to open up
                absent += 1
                continue
            try:
                allowed = rights & handled
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    allowed &= abi_.FS_FILE_RIGHTS
                if allowed:
                    abi_.add_path_rule(ruleset, fd, allowed)
                    added += 1
            finally:
                os.close(fd)
        abi_.restrict_self(ruleset)
    except OSError as exc:
        hint = " (needs no_new_privs: is that layer disabled?)" if exc.errno == errno.EPERM else ""
        raise LayerUnavailable(f"{describe(exc)}{hint}") from exc
    finally:
        os.close(ruleset)
    _applied_abi = abi
    missing = ""
    if abi < 6:
        missing = " (scoped needs ABI 6)" if abi >= 4 else " (tcp needs ABI 4, scoped needs ABI 6)"
    return f"ABI {abi}: {abi_.features(abi)}{missing}; {added} rules, {absent} paths absent"


def _first_readable_candidate(spec: SandboxSpec) -> str | None:
    """A regular file from spec.read (a listed file, or one of the first entries of a listed dir)."""
    for path in spec.read:
        if os.path.isfile(path):
            return path
        try:
            with os.scandir(path) as entries:
                for count, entry in enumerate(entries):
                    if entry.is_file(follow_symlinks=False):
                        return entry.path
                    if count > 64:
                        break
        except OSError:
            continue
    return None


def check(spec: SandboxSpec, net: NetProbe) -> str | None:
    """None when the canary and "/" are out of reach, a bucket file is still readable and (ABI >= 4) TCP is
    blocked."""
    if _applied_abi >= 4 and not net.tcp.blocked:
        return f"TCP reaches 127.0.0.1: {net.tcp.how}"
    if spec.canary:
        try:
            with open(spec.canary, "rb") as fh:
                fh.read(1)
            return f"the canary {spec.canary} is readable"
        except PermissionError:
            pass
        except FileNotFoundError:
            return f"the canary {spec.canary} does not exist: nothing to prove against"
        except OSError as exc:
            return f"the canary {spec.canary}: {exc.strerror}"
    try:
        os.listdir("/")
        return "/ can be listed"
    except PermissionError:
        pass
    sample = _first_readable_candidate(spec)
    if sample is not None:
        try:
            with open(sample, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            return f"{sample} in the read paths cannot be read: {exc.strerror}"
    return None
