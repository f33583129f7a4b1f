"""The error classifier: one table of every error category, its severity, whether it is retryable by
default, and what it means. Dependency-free, so the record writer, the queries `ob-ctl` runs and the docs
all read the same table.

Severity is on the seed design's INFO / WARNING / ERROR scale: ERROR when the service or its setup is at
fault or a file hurt a worker (someone must act), WARNING when a file could not be read or a tool failed on
it (worth a look), INFO when the file simply is what it is (corrupt, too large, a bomb) or an operator chose
its end (`Cancelled`).

`retryable` says whether another attempt could end differently with nothing changed (a transient cause).
It describes the category, not one error: the worker still flags each ERROR (a locked file is a retryable
FileAccess), and the supervisor retries every worker death on a fresh worker up to `quarantine_after`
whatever its category.

A category this table does not know (a newer worker, a hand-edited record) is never an error here: it
classifies as WARNING and is counted as `Unclassified` in the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What the statistics call a category the table does not know (or a record without one).
UNCLASSIFIED = "Unclassified"
#: The severity of a category the table does not know: worth a look, not an alarm.
UNKNOWN_SEVERITY = "WARNING"
#: The severities, most severe first.
SEVERITIES = ("ERROR", "WARNING", "INFO")


@dataclass(frozen=True, slots=True)
class Category:
    """One row of the table."""

    severity: str
    retryable: bool
    description: str


CATEGORIES: dict[str, Category] = {
    "Configuration": Category("ERROR", False, "the config or a handler it names is wrong (fix the config)"),
    "System": Category("ERROR", True, "our own storage or the host failed (disk full, read-only); retried"),
    "WorkerCrash": Category("ERROR", True, "the worker died on the file (signal or exit code)"),
    "Timeout": Category("ERROR", True, "the job overran its deadline, or the worker hung"),
    "ResourceLimit": Category(
        "ERROR", False, "the file drove the worker past a memory, CPU, size or process limit"
    ),
    "SandboxViolation": Category("ERROR", False, "the work tried something the sandbox forbids"),
    "Quarantined": Category("ERROR", False, "the file killed workers until it was quarantined"),
    "Protocol": Category("ERROR", False, "a peer spoke another protocol version or sent garbage"),
    "ExternalTool": Category("WARNING", True, "an external tool or handler skill failed on the file"),
    "FileAccess": Category("WARNING", False, "the input cannot (safely) be opened: not a file, permissions"),
    "PatternMatching": Category("WARNING", False, "a grep rule or pattern could not be applied"),
    "FileContent": Category(
        "INFO", False, "the input is readable but unacceptable: corrupt, too large, a bomb"
    ),
    "Cancelled": Category("INFO", False, "an operator ended the job (`ob-ctl bucket remove --cancel`)"),
}


def severity_of(category: str | None) -> str:
    """The severity of a category; WARNING for one the table does not know."""
    row = CATEGORIES.get(category) if category is not None else None
    return row.severity if row is not None else UNKNOWN_SEVERITY


def stats_label(category: str | None) -> str:
    """The name a category is counted under: itself, or `Unclassified` when the table does not know it."""
    return category if category is not None and category in CATEGORIES else UNCLASSIFIED
