"""verify(): every layer holds on this machine, and a layer that does not hold is demoted with a reason."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from protocol.sandbox import LAYER_ORDER, LayerReport
from tests.unit.test_sandbox_support import Child, cgroup2_dir, in_child, make_spec, reports_by_name
from worker.sandbox import apply_early, apply_late, verify


@pytest.mark.timeout(30)
def test_every_layer_is_verified_active_here(tmp_path: Path) -> None:
    cgroup = cgroup2_dir()
    if cgroup is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    spec = make_spec(tmp_path, cgroup=[cgroup])

    def body() -> list[dict[str, object]]:
        reports = apply_early(spec)
        late = apply_late(spec)
        reports = [late if r.name == late.name else r for r in reports]
        return [r.to_dict() for r in verify(spec, reports)]

    reports = in_child(body)
    assert [r["name"] for r in reports] == list(LAYER_ORDER)
    inactive = {r["name"]: r["detail"] for r in reports if not r["active"]}
    assert inactive == {}


@pytest.mark.timeout(30)
def test_layers_claimed_but_not_applied_fail_verification(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, cgroup=[str(tmp_path / "not-a-cgroup")])
    claimed = [LayerReport(name=name, active=True, detail="claimed") for name in LAYER_ORDER]

    def body() -> list[dict[str, object]]:
        return [r.to_dict() for r in verify(spec, [*claimed, LayerReport(name="other", active=True)])]

    reports = reports_by_name(in_child(body))
    for name in LAYER_ORDER:
        assert not reports[name]["active"], reports[name]
        assert reports[name]["detail"].startswith("verification failed: "), reports[name]
    assert reports["other"]["active"]  # a name verify does not know passes through
    assert "canary" in reports["landlock"]["detail"]


@pytest.mark.timeout(30)
def test_the_cgroup_the_coordinator_chose_is_verified(tmp_path: Path) -> None:
    parent = cgroup2_dir()
    if parent is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    ours = os.path.join(parent, f"ob-sandbox-test-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(ours)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup here: {exc}")
    try:
        spec = make_spec(tmp_path, cgroup=[ours])
        elsewhere = make_spec(tmp_path, cgroup=[parent, ours])

        def body() -> dict[str, object]:
            reports = apply_early(spec)
            return {
                "applied": reports_by_name(reports)["cgroup"].to_dict(),
                "verified": reports_by_name(verify(spec, reports))["cgroup"].to_dict(),
                "not_in_parent": reports_by_name(verify(elsewhere, reports))["cgroup"].to_dict(),
            }

        child = Child(body)
        try:
            # Like the coordinator: the pid goes into the cgroup once the spawn returned, racing the
            # child's apply_early, which waits for it.
            with open(os.path.join(ours, "cgroup.procs"), "w", encoding="utf-8") as fh:
                fh.write(str(child.pid))
            got = child.result()
        finally:
            child.close()
    finally:
        os.rmdir(ours)
    assert got["applied"] == {"name": "cgroup", "active": True, "detail": f"in {ours}"}
    assert got["verified"]["active"]
    assert not got["not_in_parent"]["active"] and parent in got["not_in_parent"]["detail"]
