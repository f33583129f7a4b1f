"""The attack suite's arena: a real service with hostile skills, the things they attack, and the checks.

`Arena` plants what an attacker would go for (a secret file outside every bucket, a TCP and a UDP listener
on 127.0.0.1, an abstract and a path-based unix socket), copies the hostile handler module and shell
script into a skill directory with their parameters, and starts the real coordinator with one
`[[skills]]` rule per attack. Each attack file is named after its case, so its record says which attack
it was.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import RunningService

PAYLOADS = Path(__file__).parent / "payloads"


@dataclass
class Listeners:
    """Sockets the attacks aim at; `heard()` says whether any of them saw anything."""

    tcp: socket.socket
    udp: socket.socket
    abstract: socket.socket
    unix: socket.socket
    abstract_name: str
    unix_path: str

    @classmethod
    def open(cls, base: Path) -> Listeners:
        tcp = socket.create_server(("127.0.0.1", 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        name = f"ob-hostile-{os.getpid()}-{base.name}"
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        abstract.bind("\0" + name)
        abstract.listen()
        unix_path = str(base / "outside" / "listener.sock")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(unix_path)
        unix.listen()
        for s in (tcp, udp, abstract, unix):
            s.setblocking(False)
        return cls(tcp, udp, abstract, unix, name, unix_path)

    def heard(self) -> list[str]:
        """What reached a listener: nothing must."""
        seen = []
        for label, sock in (("tcp", self.tcp), ("abstract", self.abstract), ("unix", self.unix)):
            try:
                conn, _ = sock.accept()
                conn.close()
                seen.append(label)
            except BlockingIOError:
                pass
        try:
            self.udp.recvfrom(4096)
            seen.append("udp")
        except BlockingIOError:
            pass
        return seen

    def close(self) -> None:
        for s in (self.tcp, self.udp, self.abstract, self.unix):
            s.close()


@dataclass
class Arena:
    """One hostile run's directories, planted targets and listeners."""

    base: Path
    skills: Path
    outside: Path
    secret: Path
    outside_write: Path
    marker: str
    listeners: Listeners
    setuid_grep: Path | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, base: Path) -> Arena:
        skills, outside = base / "skills", base / "outside"
        skills.mkdir()
        outside.mkdir()
        secret = outside / "secret.txt"
        secret.write_text("TOP SECRET: a hostile skill must never read this\n")
        arena = cls(
            base=base,
            skills=skills,
            outside=outside,
            secret=secret,
            outside_write=outside / "written-by-attacker.txt",
            marker=str(base / "hostile-marker"),
            listeners=Listeners.open(base),
        )
        shutil.copy(PAYLOADS / "hostile_skills.py", skills / "hostile_skills.py")
        shutil.copy(PAYLOADS / "attack.sh", skills / "attack.sh")
        if os.geteuid() == 0:
            # A setuid-root program (a copy of grep): with no_new_privs and no capabilities, running it must
            # not give the command any privilege back.
            arena.setuid_grep = skills / "suid-grep"
            shutil.copy(shutil.which("grep") or "/usr/bin/grep", arena.setuid_grep)
            os.chmod(arena.setuid_grep, 0o4755)
        arena.write_params()
        return arena

    def write_params(self) -> None:
        params = {
            "secret": str(self.secret),
            "outside_write": str(self.outside_write),
            "marker": self.marker,
            "tcp_port": self.listeners.tcp.getsockname()[1],
            "udp_port": self.listeners.udp.getsockname()[1],
            "abstract_name": self.listeners.abstract_name,
            "unix_path": self.listeners.unix_path,
            "state_dir": str(self.base / "state"),
            "notes": str(self.base / "notes"),
            **self.extra_params,
        }
        (self.skills / "hostile_params.json").write_text(json.dumps(params))
        shell = {
            "PYTHON": sys.executable,
            "SECRET": params["secret"],
            "OUTSIDE_WRITE": params["outside_write"],
            "MARKER": self.marker,
            "TCP_PORT": params["tcp_port"],
            "UDP_PORT": params["udp_port"],
            "SETUID_GREP": str(self.setuid_grep or ""),
        }
        (self.skills / "params.sh").write_text("".join(f"{k}='{v}'\n" for k, v in shell.items()))

    # -- config --------------------------------------------------------------------------------------------

    def handler_rule(self, case: str) -> str:
        return f'[[skills]]\npattern = "h-{case}.txt"\nhandler = "hostile_skills:{case}"\n'

    def command_rule(self, case: str, *, timeout_s: float = 5.0) -> str:
        argv = ["/bin/sh", str(self.skills / "attack.sh"), str(self.skills / "params.sh"), case, "{input}"]
        if case == "setuid" and self.setuid_grep is not None:
            argv.append(str(self.setuid_grep))  # named in the rule, so the sandbox lets it be executed
        return (
            f'[[skills]]\npattern = "c-{case}.txt"\ncommand = {json.dumps(argv)}\ntimeout_s = {timeout_s}\n'
        )

    def config(
        self,
        handlers: list[str] = (),  # type: ignore[assignment]
        commands: list[str] = (),  # type: ignore[assignment]
        *,
        deadline_s: float = 10.0,
        max_cpu_s: int = 2,
        command_timeout_s: float = 5.0,
        extra: str = "",
    ) -> str:
        """The config text for a service that runs these attacks, with tight limits."""
        rules = "".join(self.handler_rule(c) for c in handlers)
        rules += "".join(self.command_rule(c, timeout_s=command_timeout_s) for c in commands)
        return f"""
[jobs]
deadline_s = {deadline_s}
deadline_per_mb_s = 0.0
deadline_grace_s = 2.0
max_input_bytes = 1048576
max_output_bytes = 67108864
max_memory_bytes = 536870912
max_cpu_s = {max_cpu_s}
max_processes = 64
skill_paths = ["{self.skills}"]
retry_backoff_initial_s = 0.1
retry_backoff_max_s = 0.5

[sandbox]
require = "auto"

{rules}
{extra}
"""

    def start(self, config: str, *, workers: int = 4, supervisor: str = "") -> RunningService:
        """The real service; the supervisor may restart workers often here (that is the point)."""
        sup = "max_restarts = 1000\nquarantine_after = 2\n" + supervisor
        return RunningService(self.base, workers=workers, extra_config=config, supervisor_config=sup)

    def drop(self, svc: RunningService, names: list[str], content: bytes = b"attack\n") -> None:
        for name in names:
            staged = self.base / f".staged-{name}"
            staged.write_bytes(content)
            os.rename(staged, svc.bucket / name)

    def close(self) -> None:
        self.listeners.close()


def records_by_file(svc: RunningService) -> dict[str, list[dict[str, Any]]]:
    """Every terminal record, by the file's relative path."""
    out: dict[str, list[dict[str, Any]]] = {}
    for prefix in ("SUCCESS", "ERROR"):
        for record in svc.records_of(prefix):
            record["_kind"] = prefix
            out.setdefault(record["relativePath"], []).append(record)
    return out


def marked_processes(marker: str) -> list[int]:
    """Pids whose command line names `marker` (a hostile grandchild that must be gone)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc.info["pid"])
        except psutil.Error:
            continue
    return found
