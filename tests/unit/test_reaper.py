"""After a job, nothing it started is left: forked children and setsid'ed, double-forked grandchildren.

Runs in a child interpreter: becoming a subreaper is process-wide, and pytest itself should not adopt
orphans."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.timeout(30)

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from worker.reaper import become_subreaper, kill_leftovers, leftovers
    assert become_subreaper()
    marker = sys.argv[1]
    for _ in range(3):                      # plain children that sleep
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "300", marker])
    if os.fork() == 0:                      # a grandchild that leaves our session and its parent
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "301", marker])
        os._exit(0)
    deadline = time.monotonic() + 10
    while len(leftovers([])) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    found = len(leftovers([]))
    killed = kill_leftovers([])
    print(found, killed, len(leftovers([])), flush=True)
    """
)


def test_every_descendant_is_killed_and_reaped(tmp_path: Path) -> None:
    marker = str(tmp_path / "reaper-marker")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, marker], capture_output=True, text=True, timeout=20, check=True
    )
    found, killed, left = (int(x) for x in out.stdout.split())
    assert found >= 4 and killed >= 4 and left == 0
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert survivors == []
