"""The worker's sandbox: apply the layers of `protocol.sandbox.LAYER_ORDER` to ourselves, prove each one
from the inside, and report what holds (ARCHITECTURE section 5).

    apply_early(spec)   before any thread exists (before zmq.Context()): every layer, in order, with the
                        early seccomp filter last
    apply_late(spec)    once the ZeroMQ connection is up: the second seccomp filter (no new unix sockets)
    verify(spec, rs)    each active layer checked from inside; a layer failing its check is reported inactive
    begin_job(limits)   at the start of every job: arm its CPU limit (see rlimits)

One module per layer; each exposes apply(spec) -> detail and check(spec[, probe]) -> failure reason | None.
A layer in spec.disable is skipped and reported "disabled by config". A base layer
(`protocol.sandbox.BASE_LAYERS`) that cannot be applied raises SandboxError: the worker must not start. A
kernel layer that is unavailable here is reported inactive with its reason, never assumed.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.sandbox import BASE_LAYERS, LAYER_ORDER, LayerReport, SandboxSpec
from worker.sandbox import (
    cgroup,
    envscrub,
    landlock,
    netns,
    pdeathsig,
    privs,
    rlimits,
    scratch,
    seccomp,
    session,
)
from worker.sandbox.envscrub import ALLOWED_ENV
from worker.sandbox.errors import LayerUnavailable, SandboxError, describe, one_line
from worker.sandbox.probes import NetProbe, probe_network
from worker.sandbox.rlimits import begin_job, cpu_budget_left, start_job_cpu

__all__ = [
    "ALLOWED_ENV",
    "LayerReport",
    "SandboxError",
    "SandboxSpec",
    "apply_early",
    "apply_late",
    "begin_job",
    "cpu_budget_left",
    "start_job_cpu",
    "verify",
]

DISABLED = "disabled by config"

_APPLY: dict[str, Callable[[SandboxSpec], str]] = {
    "session": session.apply,
    "env": envscrub.apply,
    "scratch": scratch.apply,
    "cgroup": cgroup.apply,
    "netns": netns.apply,
    "rlimits": rlimits.apply,
    "pdeathsig": pdeathsig.apply,
    "no_new_privs": privs.apply_no_new_privs,
    "caps": privs.apply_caps,
    "landlock": landlock.apply,
    "seccomp": seccomp.apply_early,
}


class _Probes:
    """The network probe, run at most once per verify() and only if a check asks for it."""

    def __init__(self) -> None:
        self._net: NetProbe | None = None

    @property
    def net(self) -> NetProbe:
        if self._net is None:
            self._net = probe_network()
        return self._net


_CHECK: dict[str, Callable[[SandboxSpec, _Probes], str | None]] = {
    "session": lambda spec, _p: session.check(spec),
    "env": lambda spec, _p: envscrub.check(spec),
    "scratch": lambda spec, _p: scratch.check(spec),
    "cgroup": lambda spec, _p: cgroup.check(spec),
    "netns": lambda spec, p: netns.check(spec, p.net),
    "rlimits": lambda spec, _p: rlimits.check(spec),
    "pdeathsig": lambda spec, _p: pdeathsig.check(spec),
    "no_new_privs": lambda spec, _p: privs.check_no_new_privs(spec),
    "caps": lambda spec, _p: privs.check_caps(spec),
    "landlock": lambda spec, p: landlock.check(spec, p.net),
    "seccomp": lambda spec, p: seccomp.check(spec, p.net),
}


def apply_early(spec: SandboxSpec) -> list[LayerReport]:
    """Apply every layer in protocol.sandbox.LAYER_ORDER except the late seccomp stage, in that order, in the
    calling (main) thread, which must be the process's only thread (else Landlock, caps and netns are
    reported inactive: they bind one thread). Never raises for an unavailable kernel layer: it is reported
    active=False with the reason. A base layer that fails raises SandboxError."""
    reports: list[LayerReport] = []
    for name in LAYER_ORDER:
        if name in spec.disable:
            reports.append(LayerReport(name=name, active=False, detail=DISABLED))
            continue
        try:
            detail = _APPLY[name](spec)
        except (LayerUnavailable, OSError) as exc:
            if name in BASE_LAYERS:
                raise SandboxError(name, describe(exc)) from exc
            reports.append(LayerReport(name=name, active=False, detail=one_line(describe(exc))))
            continue
        reports.append(LayerReport(name=name, active=True, detail=one_line(detail)))
    return reports


def apply_late(spec: SandboxSpec) -> LayerReport:
    """Called once the worker's ZeroMQ connection is established (threads exist now): stack a second seccomp
    filter, with TSYNC, that refuses new AF_UNIX sockets (socket and socketpair -> EPERM). Returns the
    report for "seccomp": active only if both filters are in."""
    if "seccomp" in spec.disable:
        return LayerReport(name="seccomp", active=False, detail=DISABLED)
    try:
        detail = seccomp.apply_late(spec)
    except (LayerUnavailable, OSError) as exc:
        return LayerReport(name="seccomp", active=False, detail=one_line(describe(exc)))
    return LayerReport(name="seccomp", active=True, detail=one_line(detail))


def verify(spec: SandboxSpec, reports: list[LayerReport]) -> list[LayerReport]:
    """Check each layer reported active from the inside; return the reports, with active=False and the
    reason for any layer that fails its check (inactive reports and unknown names pass through)."""
    probes = _Probes()
    checked: list[LayerReport] = []
    for report in reports:
        check = _CHECK.get(report.name)
        if not report.active or check is None:
            checked.append(report)
            continue
        try:
            failure = check(spec, probes)
        except OSError as exc:
            failure = f"check failed: {describe(exc)}"
        if failure is None:
            checked.append(report)
        else:
            detail = one_line(f"verification failed: {failure}")
            checked.append(LayerReport(name=report.name, active=False, detail=detail))
    return checked
