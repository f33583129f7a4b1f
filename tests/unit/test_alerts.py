"""Alerts raised and cleared by hand-fed values."""

from __future__ import annotations

from coordinator.alerts import Alerts, Thresholds


def test_a_breach_is_raised_once_kept_while_it_lasts_and_cleared_when_it_recovers() -> None:
    alerts = Alerts(Thresholds(queue_depth=100))
    raised, cleared = alerts.check({"queue_depth": 150}, 1000.0)
    assert [a.name for a in raised] == ["queue_depth"] and not cleared
    raised, cleared = alerts.check({"queue_depth": 180}, 1001.0)
    assert not raised and alerts.rows()[0]["value"] == 180 and alerts.rows()[0]["since"] == 1000.0
    raised, cleared = alerts.check({"queue_depth": 20}, 1002.0)
    assert [a.name for a in cleared] == ["queue_depth"] and alerts.rows() == []


def test_each_alert_and_its_direction() -> None:
    alerts = Alerts(Thresholds())
    values = {
        "error_rate": 0.6,
        "files_5m": 100,
        "queue_depth": 10,
        "queue_wait_p95_s": 700.0,
        "failed_slots": 1,
        "restarts_per_min": 11,
        "disk_free_mb": 100,
    }
    raised, _ = alerts.check(values, 0.0)
    assert {a.name for a in raised} == {
        "error_rate",
        "queue_wait_p95_s",
        "failed_slots",
        "restarts_per_min",
        "disk_free_mb",
    }
    messages = {r["name"]: r["message"] for r in alerts.rows()}
    assert messages["error_rate"] == "60% of the last 5 minutes' 100 files failed"
    assert messages["disk_free_mb"] == "only 100 MiB free for notes and records"


def test_an_error_rate_needs_enough_files_and_a_zero_threshold_is_off() -> None:
    alerts = Alerts(Thresholds(error_rate=0.1, queue_depth=0))
    raised, _ = alerts.check({"error_rate": 1.0, "files_5m": 3, "queue_depth": 10**9}, 0.0)
    assert raised == []
    raised, _ = alerts.check({"error_rate": None, "disk_free_mb": None}, 0.0)
    assert raised == []
