"""Starting and signalling worker processes.

Each worker gets its own session and process group (`start_new_session`), so one `killpg` reaches whatever
it started, and a Ctrl-C in the coordinator's terminal is not delivered to the workers behind its back: the
coordinator stops them itself, in order. It starts in its jail (`coordinator.jails`): its scratch dir as
working directory and home, a minimal environment, its sandbox spec on the command line, and its pid put
into its cgroup at once, before its interpreter has even finished starting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.jails import Jails
    from coordinator.worker_logs import WorkerLogs

Spawner = Callable[[int, int], subprocess.Popen[bytes]]


def worker_command(
    endpoint: str,
    slot: int,
    generation: int,
    *,
    log_level: str,
    log_json: bool,
    nice: int = 0,
) -> list[str]:
    """The argv of one worker (`python -m worker`, the same code as the `ob-worker` script)."""
    cmd = [
        sys.executable,
        "-m",
        "worker",
        "--endpoint",
        endpoint,
        "--slot",
        str(slot),
        "--generation",
        str(generation),
        "--parent-pid",
        str(os.getpid()),
        "--log-level",
        log_level,
        "--nice",
        str(nice),
    ]
    if log_json:
        cmd.append("--log-json")
    return cmd


def make_spawner(
    endpoint: str,
    *,
    log_level: str,
    log_json: bool,
    nice: int = 0,
    jails: Jails | None = None,
    logs: WorkerLogs | None = None,
) -> Spawner:
    """A function that starts the worker for (slot, generation), in a fresh jail when `jails` is given,
    its log going through a pipe to `logs` when that is given."""

    def spawn(slot: int, generation: int) -> subprocess.Popen[bytes]:
        if jails is None:
            return subprocess.Popen(
                worker_command(endpoint, slot, generation, log_level=log_level, log_json=log_json, nice=nice),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
        jail = jails.prepare(f"{slot}.{generation}")
        argv = worker_command(endpoint, slot, generation, log_level=log_level, log_json=log_json, nice=nice)
        log_r, log_w = logs.pipe() if logs is not None else (-1, None)
        try:
            proc = subprocess.Popen(
                [*argv, "--sandbox", jail.spec.to_json()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # what a skill prints belongs nowhere
                stderr=log_w,  # the worker's log, relayed by coordinator.worker_logs
                cwd=jail.scratch,
                env=jails.env(jail),
                close_fds=True,
                start_new_session=True,
            )
        except OSError:
            jails.abandon(jail)
            if logs is not None:
                os.close(log_r)
            raise
        finally:
            if log_w is not None:
                os.close(log_w)
        jails.started(jail, proc.pid)
        if logs is not None:
            logs.add(log_r, f"{slot}.{generation}")
        return proc

    return spawn


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` to the worker's process group (its pid is the group id); False if it is already gone."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id was reused by someone else's process: leave it alone
        return False


def describe_exit(returncode: int | None) -> tuple[str, str]:
    """(code, human text) for a process's exit status."""
    if returncode is None:
        return "running", "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return name, f"killed by {name} (signal {-returncode})"
    return f"exit {returncode}", f"exited with code {returncode}"
