"""The sandbox contract: a spec survives the command line exactly, and anything malformed is refused with
the field named (the worker exits rather than build a sandbox from a spec it does not understand)."""

from __future__ import annotations

import json

import pytest

from protocol.sandbox import LayerReport, SandboxLimits, SandboxSpec

pytestmark = pytest.mark.timeout(10)


def test_a_spec_round_trips_through_json() -> None:
    spec = SandboxSpec(
        read=["/b"], write=["/n"], execute=["/bin/sh"], scratch="/s", canary="/c",
        cgroup=["/sys/fs/cgroup/x"], limits=SandboxLimits(memory_bytes=256 << 20, cpu_s=3), disable=["netns"],
    )  # fmt: skip
    assert SandboxSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"reed": ["/b"]}, "unknown key 'reed'"),
        ({"read": "/b"}, "read: expected a list"),
        ({"read": [1]}, "read[]: expected a string"),
        ({"scratch": "x" * 5000}, "scratch: expected a string of at most 4096"),
        ({"limits": {"memory_bytes": 1}}, "limits.memory_bytes: 1 is not an integer"),
        ({"limits": {"cpu_s": True}}, "limits.cpu_s: True is not an integer"),
        ({"limits": {"cpus": 1}}, "limits: unknown key 'cpus'"),
        ([], "a sandbox spec is a JSON object"),
    ],
)
def test_a_malformed_spec_is_refused_with_the_field_named(data: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        SandboxSpec.from_json(json.dumps(data))


def test_layer_reports_are_checked_too() -> None:
    assert LayerReport.from_dict({"name": "seccomp", "active": True}).detail == ""
    with pytest.raises(ValueError, match="active"):
        LayerReport.from_dict({"name": "seccomp", "active": "yes"})
    with pytest.raises(ValueError, match="unknown key"):
        LayerReport.from_dict({"name": "seccomp", "active": True, "extra": 1})
