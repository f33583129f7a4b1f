"""`ob-ctl stop`: stop the coordinator as SIGTERM does (in-flight jobs get `service.shutdown_grace_s`), and
wait until its process is gone.

It runs in `ob-ctl` (`local`): the coordinator is found through its state lock (`coordinator.lock`, the pid
of the live holder), the process is checked with psutil (a coordinator's command line, started before it
wrote the lock: pids get reused), then asked over the control socket (`handle`, below, answers with its
grace periods, which bound the wait). If the socket does not answer (a wedged loop, or a coordinator older
than this command), it gets SIGTERM instead, which the service treats the same way. A second `stop` while
one is under way is a second SIGTERM: it skips the grace.

Exit codes: 0 stopped, or not running; 1 still running when `--timeout` ran out, or the lock's holder is
not a coordinator (it is not signalled).
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from loguru import logger

if TYPE_CHECKING:
    from coordinator.service import Service

HELP = "stop the coordinator gracefully (like SIGTERM) and wait until it has exited"

#: How long to wait for the process to exit when the coordinator did not say its grace periods (it was
#: signalled instead of asked).
DEFAULT_WAIT_S = 60.0
#: Beyond the grace periods: the stop sequence's own steps, the last snapshot and reports, closing the queue.
MARGIN_S = 15.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--timeout S`: how long to wait for the process to exit (ob-ctl's own `--timeout`, before the
    command, is how long to wait for an answer)."""
    parser.add_argument(
        "--timeout",
        dest="stop_timeout",
        type=_seconds,
        metavar="S",
        help="seconds to wait for it to exit (default: its shutdown and kill grace, plus a margin)",
    )


def handle(service: Service, args: dict[str, Any]) -> dict[str, Any]:
    """Begin the stop sequence and say how long it may take."""
    cfg = service.config
    already = service.supervisor.stopping
    logger.info("ob-ctl stop: stopping as on SIGTERM")
    service.request_stop()
    return {
        "pid": service.pid,
        "already_stopping": already,
        "busy": sum(slot.job is not None for slot in service.supervisor.slots),
        "shutdown_grace_s": cfg.service.shutdown_grace_s,
        "kill_grace_s": cfg.supervisor.kill_grace_s,
    }


def expected_wait(reply: dict[str, Any] | None) -> float:
    """How long a stop may take: the in-flight jobs' grace, the workers' exit and kill steps (see
    `service._Stopper`), and a margin; DEFAULT_WAIT_S when the coordinator did not say."""
    if reply is None:
        return DEFAULT_WAIT_S
    kill = float(reply.get("kill_grace_s", 1.0))
    return float(reply.get("shutdown_grace_s", 10.0)) + max(kill, 1.0) + kill + 5.0 + MARGIN_S


def local(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Find the coordinator, ask it (or signal it) to stop, wait until it is gone."""
    from coordinator.ctl import NoCoordinator, request
    from coordinator.daemon import is_gone
    from coordinator.lock import holder_pid
    from coordinator.paths import run_dir

    run = run_dir(state_dir)
    result: dict[str, Any] = {"state_dir": str(state_dir.expanduser().absolute()), "running": False}
    pid = holder_pid(run)
    if pid is None:
        return result  # nobody holds the lock: nothing runs on this state dir (a pid file is stale)
    started = time.monotonic()
    reply: dict[str, Any] | None = None
    proc: psutil.Process | None = None
    try:
        # Asked first, whatever its command line looks like (a zipapp, an embedded service, another pid
        # namespace): whoever answers on this state dir's control socket is the coordinator.
        reply = request(state_dir, "stop", timeout_s=args.timeout)
        result["how"] = "asked"
        pid = int(reply.get("pid") or pid)
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            proc = None  # gone already
    except (NoCoordinator, RuntimeError) as exc:
        # No answer (a wedged loop), or a coordinator that predates `stop`: SIGTERM means the same to it,
        # but only to a process that is vetted as ours (pids are reused).
        proc = _vetted(run, pid)
        if proc is None:
            if holder_pid(run) is None:  # it exited while we looked
                return result
            raise RuntimeError(
                f"pid {pid} holds {run / 'coordinator.lock'} but is not a coordinator: not signalled"
            ) from None
        pid = proc.pid
        result["how"] = "SIGTERM"
        result["why_signal"] = str(exc)
        try:
            proc.send_signal(signal.SIGTERM)  # (psutil checks the process is still the one we vetted)
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and kin: it is gone already
            pass
    result.update(running=True, pid=pid)
    timeout = args.stop_timeout if args.stop_timeout is not None else expected_wait(reply)
    result["timeout_s"] = timeout
    while proc is not None and not is_gone(proc) and time.monotonic() - started < timeout:
        time.sleep(0.05)
    result["stopped"] = proc is None or is_gone(proc)
    result["waited_s"] = round(time.monotonic() - started, 3)
    if reply is not None:
        result.update(already_stopping=reply.get("already_stopping", False), busy=reply.get("busy", 0))
    return result


def _vetted(run: Path, pid: int) -> psutil.Process | None:
    """The lock holder's process if it is a coordinator started before it wrote its pid, else None."""
    from coordinator.daemon import coordinator_process, pid_file, read_pid_file

    lock_file = run / "coordinator.lock"
    if pid < 0:  # the lock is held but names nobody yet (a coordinator between flock and write)
        pid = read_pid_file(pid_file(run)) or -1
        lock_file = pid_file(run)
    try:
        written: float | None = lock_file.stat().st_mtime
    except OSError:
        written = None
    return coordinator_process(pid, started_before=written)


def render(result: dict[str, Any]) -> str:
    """One line: not running, stopped (and how), or still running."""
    if not result["running"]:
        return f"not running (state dir {result['state_dir']})"
    how = "" if result["how"] == "asked" else " (sent SIGTERM: the control socket did not answer)"
    if result["stopped"]:
        return f"stopped coordinator pid {result['pid']} in {result['waited_s']:.1f}s{how}"
    return (
        f"coordinator pid {result['pid']} is still running after {result['timeout_s']:g}s{how}; it may "
        f"still be finishing in-flight jobs (see its log); `ob-ctl stop` again skips the grace"
    )


def exit_code(result: dict[str, Any]) -> int:
    """0 stopped or not running, 1 still running."""
    return 1 if result["running"] and not result["stopped"] else 0
