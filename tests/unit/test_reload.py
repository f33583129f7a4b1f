"""The pure part of a reload (`coordinator.reload.plan_reload`) and the placement rules of a bucket added at
run time (`coordinator.placement`): configs in, a plan out, no process, socket or queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.config import Config, ConfigError, config_from
from coordinator.placement import moved_outputs, placement_problem
from coordinator.reload import plan_reload


def config(base: Path, *buckets: dict[str, Any], **sections: dict[str, Any]) -> Config:
    """A config living in `base`, with these `[[buckets]]` (default: one named `a`)."""
    data: dict[str, Any] = {
        "service": {"state_dir": str(base / "state"), "output": str(base / "notes"), "workers": 2},
        "buckets": list(buckets) or [{"name": "a", "path": str(base / "a")}],
    }
    for section, fields in sections.items():
        data[section] = data.get(section, {}) | fields
    return config_from(data, "test.toml")


def test_the_same_config_changes_nothing(tmp_path: Path) -> None:
    plan = plan_reload(config(tmp_path), config(tmp_path))
    assert (plan.changes, plan.kept, plan.removed, plan.added) == ([], [], [], [])


def test_run_time_settings_apply_and_are_listed(tmp_path: Path) -> None:
    new = config(
        tmp_path,
        service={"workers": 3},
        jobs={"retry_max_attempts": 2},
        breaker={"failure_threshold": 9},
        watcher={"settle_s": 0.1},
    )
    plan = plan_reload(config(tmp_path), new)
    assert plan.kept == []
    assert plan.changes == [
        "service.workers 2 -> 3",
        "watcher.settle_s 1.0 -> 0.1",
        "jobs.retry_max_attempts 5 -> 2",
        "breaker.failure_threshold 5 -> 9",
    ]
    assert plan.config.service.workers == 3 and plan.config.jobs.retry_max_attempts == 2


def test_restart_only_fields_are_kept_with_one_warning_each_and_the_rest_applies(tmp_path: Path) -> None:
    old = config(tmp_path)
    new = config(
        tmp_path,
        service={"state_dir": str(tmp_path / "elsewhere"), "log_level": "DEBUG", "workers": 5},
        sandbox={"disable": ["seccomp"]},
        watcher={"polling": True},
    )
    plan = plan_reload(old, new)
    assert plan.kept == [
        f"service.state_dir changes need a restart; keeping {tmp_path / 'state'}",
        "service.log_level changes need a restart; keeping INFO",
        "sandbox.disable changes need a restart; keeping []",
        "watcher.polling changes need a restart; keeping False",
    ]
    assert plan.config.service.state_dir == old.service.state_dir
    assert plan.config.service.log_level == "INFO" and plan.config.sandbox.disable == []
    assert not plan.config.watcher.polling
    assert plan.changes == ["service.workers 2 -> 5"]


def test_buckets_are_added_removed_and_replaced_by_name(tmp_path: Path) -> None:
    a = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "notes-a")}
    b = {"name": "b", "path": str(tmp_path / "b"), "output": str(tmp_path / "notes-b")}
    c = {"name": "c", "path": str(tmp_path / "c"), "output": str(tmp_path / "notes-c")}
    old = config(tmp_path, a, b)
    new = config(tmp_path, a | {"patterns": ["*.txt"]}, c)
    plan = plan_reload(old, new)
    assert plan.removed == ["b", "a"]
    assert [x.name for x in plan.added] == ["a", "c"]
    assert plan.changes == [
        "bucket b removed",
        "bucket a changed (path, patterns or ignore)",
        f"bucket c added ({tmp_path / 'c'})",
    ]
    assert plan.kept == []


def test_a_second_bucket_sharing_the_output_would_move_the_first_ones_notes_so_neither_happens(
    tmp_path: Path,
) -> None:
    old = config(tmp_path)  # one bucket: its notes go straight into service.output
    new = config(
        tmp_path, {"name": "a", "path": str(tmp_path / "a")}, {"name": "b", "path": str(tmp_path / "b")}
    )
    plan = plan_reload(old, new)
    notes = tmp_path / "notes"
    assert plan.kept == [
        f"buckets.a.output changes need a restart; keeping {notes} (not {notes / 'a'})",
        f"buckets.b is not added: its notes dir {notes / 'b'} would mix with bucket 'a''s, kept at {notes}; "
        "give it its own output, or restart",
    ]
    assert plan.added == [] and plan.removed == [] and plan.changes == []
    assert [b.name for b in plan.config.buckets] == ["a"]
    assert plan.config.bucket_output(plan.config.buckets[0]) == notes


def test_the_bucket_left_alone_in_a_shared_output_keeps_its_notes_dir(tmp_path: Path) -> None:
    two = [{"name": n, "path": str(tmp_path / n)} for n in ("a", "b")]
    plan = plan_reload(config(tmp_path, *two), config(tmp_path, two[0]))
    notes = tmp_path / "notes"
    assert plan.removed == ["b"]
    assert plan.kept == [f"buckets.a.output changes need a restart; keeping {notes / 'a'} (not {notes})"]
    assert plan.config.bucket_output(plan.config.buckets[0]) == notes / "a"
    # ... and a later reload of the same file changes nothing more (the kept dir is spelled out now).
    again = plan_reload(plan.config, config(tmp_path, two[0]))
    assert again.removed == [] and again.added == []


def test_a_new_bucket_that_breaks_a_placement_rule_makes_the_reload_invalid(tmp_path: Path) -> None:
    inside_state = {"name": "s", "path": str(tmp_path / "state" / "drop"), "output": str(tmp_path / "o")}
    (tmp_path / "state").mkdir()
    with pytest.raises(ConfigError, match=r"^test.toml: buckets.s: .* is inside the state dir"):
        plan_reload(
            config(tmp_path),
            config(tmp_path, {"name": "a", "path": str(tmp_path / "a")}, inside_state),
            "test.toml",
        )


def test_a_running_bucket_may_keep_holding_its_notes(tmp_path: Path) -> None:
    # Allowed at start (the watcher leaves its notes alone); changing its globs must not be refused.
    holder = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "a" / "notes")}
    plan = plan_reload(config(tmp_path, holder), config(tmp_path, holder | {"ignore": ["*.bak"]}))
    assert plan.removed == ["a"] and [b.name for b in plan.added] == ["a"]


def test_placement_rules(tmp_path: Path) -> None:
    a = {"name": "a", "path": str(tmp_path / "a"), "output": str(tmp_path / "x" / "notes-a")}
    (tmp_path / "x").mkdir()

    def problem(**bucket: Any) -> str | None:
        cfg = config(tmp_path, a, {"name": "new"} | bucket)
        return placement_problem(cfg, cfg.buckets[-1])

    assert problem(path=str(tmp_path / "new"), output=str(tmp_path / "notes-new")) is None
    assert "already the root of bucket 'a'" in (problem(path=str(tmp_path / "a")) or "")
    assert "holds bucket 'a''s notes dir" in (
        problem(path=str(tmp_path / "x"), output=str(tmp_path / "n")) or ""
    )
    assert "are nested; nest buckets in the config file" in (
        problem(path=str(tmp_path), output=str(tmp_path / "n")) or ""
    )
    assert "and bucket 'a'" in (problem(path=str(tmp_path / "n"), output=str(tmp_path / "a" / "o")) or "")
    assert "overlaps the state dir" in (
        problem(path=str(tmp_path / "n"), output=str(tmp_path / "state" / "records")) or ""
    )
    assert "overlaps bucket 'a''s notes dir" in (
        problem(path=str(tmp_path / "n"), output=str(tmp_path / "x" / "notes-a" / "sub")) or ""
    )
    assert "holds its own notes dir" in (
        problem(path=str(tmp_path / "n"), output=str(tmp_path / "n" / "o")) or ""
    )


def test_moved_outputs_names_each_bucket_whose_notes_would_move(tmp_path: Path) -> None:
    one = config(tmp_path)
    two = config(
        tmp_path, {"name": "a", "path": str(tmp_path / "a")}, {"name": "b", "path": str(tmp_path / "b")}
    )
    assert moved_outputs(one, two) == [("a", tmp_path / "notes", tmp_path / "notes" / "a")]
    assert moved_outputs(one, one) == []
