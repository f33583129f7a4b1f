"""Hung or busy: the silence verdict as pure logic, with hand-fed CPU times and clock."""

from __future__ import annotations

import psutil

from coordinator.silence import SilenceWatch


def test_a_stopped_process_is_hung_at_once() -> None:
    assert SilenceWatch().judge(status=psutil.STATUS_STOPPED, cpu=1.0, busy=True, now=0, limit=3) == (
        "process is stopped"
    )


def test_an_idle_silent_worker_is_hung() -> None:
    assert SilenceWatch().judge(status=psutil.STATUS_SLEEPING, cpu=1.0, busy=False, now=0, limit=3)


def test_a_zombie_is_left_to_the_exit_handler() -> None:
    assert SilenceWatch().judge(status=psutil.STATUS_ZOMBIE, cpu=1.0, busy=True, now=0, limit=3) is None


def test_busy_with_climbing_cpu_is_given_time() -> None:
    watch = SilenceWatch()
    for step in range(10):  # 10 s of silence, CPU climbing all along: busy in GIL-holding code
        assert (
            watch.judge(status=psutil.STATUS_RUNNING, cpu=float(step), busy=True, now=step, limit=3) is None
        )


def test_busy_without_cpu_progress_for_the_limit_is_hung() -> None:
    watch = SilenceWatch()
    assert watch.judge(status=psutil.STATUS_SLEEPING, cpu=5.0, busy=True, now=0.0, limit=3) is None
    assert watch.judge(status=psutil.STATUS_SLEEPING, cpu=5.0, busy=True, now=2.9, limit=3) is None
    assert watch.judge(status=psutil.STATUS_SLEEPING, cpu=5.0, busy=True, now=3.0, limit=3) == (
        "busy with no CPU progress"
    )


def test_speaking_again_resets_the_watch() -> None:
    watch = SilenceWatch()
    watch.judge(status=psutil.STATUS_SLEEPING, cpu=5.0, busy=True, now=0.0, limit=3)
    watch.reset()
    assert watch.judge(status=psutil.STATUS_SLEEPING, cpu=5.0, busy=True, now=10.0, limit=3) is None
