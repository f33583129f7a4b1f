"""Fixtures for the attack suite: an arena in the test's scratch dir, closed afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.arena import Arena


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not sys.platform.startswith("linux"):
        for item in items:
            item.add_marker(pytest.mark.skip(reason="the sandbox layers under attack are Linux's"))


@pytest.fixture
def arena(scratch: Path) -> Iterator[Arena]:
    built = Arena.build(scratch)
    try:
        yield built
    finally:
        built.close()
