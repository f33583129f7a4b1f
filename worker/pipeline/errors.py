"""Errors a job can fail with: each carries the category, code and retryability the ERROR message needs.

    JobError                      any category; raised directly for System, Timeout, ResourceLimit,
                                  SandboxViolation, Configuration and ExternalTool (a failing skill)
    ├── FileAccessError           category "FileAccess": cannot (safely) open or read the input
    └── FileContentError          category "FileContent": the input is readable but unacceptable
        └── FileTooLargeError     larger than the configured limit (never read)

`str(error)` is the human message, so generic handlers that only know `Exception` still report it well.
"""

from __future__ import annotations

import errno
from typing import Literal

JobErrorCategory = Literal[
    "Configuration",
    "FileAccess",
    "FileContent",
    "ExternalTool",
    "System",
    "Timeout",
    "ResourceLimit",
    "SandboxViolation",
]


class JobError(Exception):
    """A job failed for a reason the worker understands; the worker itself is fine."""

    def __init__(
        self,
        category: JobErrorCategory,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.category: JobErrorCategory = category
        self.message = message
        self.code = code
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(category={self.category!r}, message={self.message!r}, "
            f"code={self.code!r}, retryable={self.retryable!r})"
        )


class FileAccessError(JobError):
    """The input file cannot be opened or read, or is not something we are willing to open."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__("FileAccess", message, code=code, retryable=retryable)


class FileContentError(JobError):
    """The input file was opened but its content is unacceptable."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__("FileContent", message, code=code, retryable=retryable)


class FileTooLargeError(FileContentError):
    """The input is larger than `max_input_bytes`; raised before a single byte is read."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"{path} is too large: {size} bytes, the limit is {limit}", code="EFBIG")
        self.size = size
        self.limit = limit


def errno_name(exc: OSError) -> str | None:
    """The symbolic errno of an OSError ("ENOENT"), for the ERROR message's `code`."""
    if exc.errno is None:
        return None
    return errno.errorcode.get(exc.errno, str(exc.errno))
