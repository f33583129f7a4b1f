"""Layer "env": the environment shrinks to a short allow-list, and HOME/TMPDIR point at the scratch dir.

The coordinator already spawns workers with a minimal environment; this is defence in depth, so a variable
that leaked in (a token, LD_PRELOAD, a proxy setting, RIPGREP_CONFIG_PATH...) never reaches the programs a
skill runs. Changing `os.environ` also changes the C environment children inherit.
"""

from __future__ import annotations

import os

from protocol.sandbox import SandboxSpec

ALLOWED_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "HOME",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
    }
)


def apply(spec: SandboxSpec) -> str:
    """Drop every variable not in ALLOWED_ENV; set HOME and TMPDIR to the scratch dir when there is one."""
    dropped = sorted(key for key in os.environ if key not in ALLOWED_ENV)
    for key in dropped:
        del os.environ[key]
    if spec.scratch:
        os.environ["HOME"] = spec.scratch
        os.environ["TMPDIR"] = spec.scratch
    return f"{len(os.environ)} variables kept, {len(dropped)} dropped"


def check(spec: SandboxSpec) -> str | None:
    """None when only allowed variables are left, else which ones are not."""
    extra = sorted(key for key in os.environ if key not in ALLOWED_ENV)
    return f"unexpected variables: {', '.join(extra)}" if extra else None
