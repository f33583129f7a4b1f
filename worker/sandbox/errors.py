"""The two ways a sandbox layer can fail to go in.

A *base* layer that cannot be applied stops the worker (`SandboxError`): running without a session, a scratch
dir or resource limits is never acceptable. A *kernel* layer may be missing on a given machine (old kernel,
no privileges, a library absent); its module raises `LayerUnavailable` and the orchestrator reports the layer
inactive with that reason instead of failing.
"""

from __future__ import annotations


def one_line(text: str, limit: int = 1024) -> str:
    """Collapse whitespace and cut to `limit` characters: reasons end up in reports and single log lines."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """A reason without Python's "[Errno N]" prefix: OSError's text (and file name), else str(exc)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


class SandboxError(Exception):
    """A base layer could not be applied; str() is one line that starts with the layer's name."""

    def __init__(self, layer: str, reason: str) -> None:
        self.layer = layer
        self.reason = one_line(reason)
        super().__init__(f"{layer}: {self.reason}")


class LayerUnavailable(Exception):
    """A layer cannot be applied here; the message is the reason shown in its report."""
