"""The error classifier: every category the protocol knows has a row, with the seed's severities; an unknown
category is a WARNING counted as Unclassified, never an exception."""

from __future__ import annotations

from typing import get_args

import pytest

from coordinator.errors_table import (
    CATEGORIES,
    SEVERITIES,
    UNCLASSIFIED,
    severity_of,
    stats_label,
)
from coordinator.records import SEVERITY
from protocol.messages import ErrorCategory


def test_the_table_covers_exactly_the_protocols_categories() -> None:
    assert set(CATEGORIES) == set(get_args(ErrorCategory))
    assert all(row.severity in SEVERITIES for row in CATEGORIES.values())
    assert all(row.description and "\n" not in row.description for row in CATEGORIES.values())


@pytest.mark.parametrize(
    ("category", "severity", "retryable"),
    [
        ("Configuration", "ERROR", False),
        ("System", "ERROR", True),
        ("WorkerCrash", "ERROR", True),
        ("Timeout", "ERROR", True),
        ("ResourceLimit", "ERROR", False),
        ("SandboxViolation", "ERROR", False),
        ("Quarantined", "ERROR", False),
        ("Protocol", "ERROR", False),
        ("ExternalTool", "WARNING", True),
        ("FileAccess", "WARNING", False),
        ("PatternMatching", "WARNING", False),
        ("FileContent", "INFO", False),
        ("Cancelled", "INFO", False),
    ],
)
def test_each_category_classifies(category: str, severity: str, retryable: bool) -> None:
    assert severity_of(category) == severity
    assert CATEGORIES[category].retryable is retryable
    assert stats_label(category) == category
    assert SEVERITY[category] == severity  # the old mapping still answers for its importers


@pytest.mark.parametrize("category", ["Martian", "", "fileaccess", None])
def test_an_unknown_category_is_a_warning_counted_as_unclassified(category: str | None) -> None:
    assert severity_of(category) == "WARNING"
    assert stats_label(category) == UNCLASSIFIED
