"""Name rules: the string-test fast path for globs must agree with `fnmatchcase` on every name."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest

from coordinator.config import DEFAULT_TEMP_IGNORES
from coordinator.names import NameGlobs, NameRules


@pytest.mark.parametrize(
    "globs",
    [
        list(DEFAULT_TEMP_IGNORES),
        ["a?c", "[ab]*", "x", "*", "*.t*p", "*[*", "*]", "?*"],
        ["*.tmp", "~*", "exact.name"],
        [],
    ],
)
def test_name_globs_agree_with_fnmatchcase(globs: list[str]) -> None:
    matcher = NameGlobs(globs)
    rnd = random.Random(7)
    alphabet = "ab.~*?[]tmpxAT"
    names = ["", ".", "..", ".tmp", "~", "a.TMP", "exact.name", "exact.names"]
    names += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 7))) for _ in range(20_000)]
    for name in names:
        assert matcher.match(name) == any(fnmatchcase(name, g) for g in globs), (globs, name)


def test_default_bucket_takes_any_name_that_is_not_a_temp_name() -> None:
    rules = NameRules(DEFAULT_TEMP_IGNORES, [], [])
    assert rules.verdict("d/report.csv", dirs_checked=True) == "ok"
    assert rules.verdict("d/report.csv.part", dirs_checked=True) == "ignored"
    assert rules.verdict(".git/config") == "ignored"
    narrowed = NameRules(DEFAULT_TEMP_IGNORES, ["*.csv"], ["old/*"])
    assert narrowed.verdict("d/report.txt", dirs_checked=True) == "rejected"
    assert narrowed.verdict("old/a.csv", dirs_checked=True) == "rejected"
    assert narrowed.verdict("new/a.csv", dirs_checked=True) == "ok"
