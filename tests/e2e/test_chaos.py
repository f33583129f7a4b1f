"""The chaos run (scripts/chaos.py) on a small configuration: 300 real files arriving in batches while workers
are SIGKILLed every 250 ms and the coordinator twice, then a calm run to compare notes with.

The script's own verdict is the assertion: every file version ends in exactly one terminal record, nothing
is left in flight, every SUCCESS has its note, and notes match the calm run's. Set OB_CHAOS_SEED to vary
which files are picked and when the kills fall.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO

SEED = int(os.environ.get("OB_CHAOS_SEED", "1"))


@pytest.mark.timeout(300)
def test_chaos_every_file_ends_in_exactly_one_record(scratch: Path) -> None:
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "chaos.py"),
        "--files", "300",
        "--workers", "2",
        "--worker-kill-ms", "250",
        "--coordinator-kills", "2",
        "--duration", "8",
        "--drain-timeout", "90",
        "--seed", str(SEED),
        "--base", str(scratch),  # every process it starts names the scratch dir: the leak check covers them
        "--keep",  # the scratch fixture removes it; kept so a failure can show the coordinator's logs
        "--json", str(scratch / "chaos.json"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=270)
    except subprocess.TimeoutExpired:
        output = _stop(proc)
        pytest.fail(f"chaos.py did not finish in 270 s (seed {SEED}):\n{output[-6000:]}")
    finally:
        if proc.poll() is None:  # interrupted (pytest-timeout, Ctrl-C): the script must still clean up
            _stop(proc)
    summary = next((line for line in output.splitlines() if line.startswith("chaos: ")), "")
    if proc.returncode != 0 or not summary.endswith(": OK"):
        logs = sorted(scratch.glob("chaos-*/*.log"))
        tails = "".join(
            f"\n--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-3000:]}" for log in logs
        )
        pytest.fail(f"chaos.py exit {proc.returncode} (seed {SEED}):\n{output[-8000:]}{tails}")
    assert "0 lost, 0 duplicated, 0 note mismatches" in summary, summary


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (the script cleans up after itself), then SIGKILL; whatever it printed."""
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output or ""
