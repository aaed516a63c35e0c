"""Starting, watching and stopping the stack's processes through pid files, so any shell can stop them.

Every process runs in its own session (its pid is its process group), with its pid in `<pids>/<name>.pid`
and its output in `<logs>/<name>.log`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from offcluster.process_group import group_alive


@dataclass(frozen=True)
class Service:
    """One process of the stack: how to start it and where it says it is ready."""

    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()


class NotReady(RuntimeError):
    def __init__(self, service: Service, log: Path) -> None:
        self.service, self.log = service, log
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        super().__init__(
            f"{service.name} did not become ready at {service.ready_url} (see {log}):\n  " + "\n  ".join(tail)
        )


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    def __init__(self, pids: Path, logs: Path, cwd: Path) -> None:
        self.pids, self.logs, self.cwd = pids, logs, cwd

    def running(self) -> dict[str, int]:
        """name -> pid of every service whose pid file names a live process (stale files are removed)."""
        alive = {}
        for pid_file in sorted(self.pids.glob("*.pid")) if self.pids.exists() else []:
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pid_file.unlink()
                continue
            alive[pid_file.stem] = pid
        return alive

    def start(self, service: Service, timeout: float) -> None:
        """Start `service` and wait until its ready URL answers; raises NotReady (with its log's tail)."""
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{service.name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                service.command,
                cwd=self.cwd,
                env={**os.environ, **service.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (self.pids / f"{service.name}.pid").write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if http_ok(service.ready_url, timeout=1.0):
                return
            time.sleep(0.2)
        raise NotReady(service, log)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 35.0) -> bool:
        """Stop one service (its whole process group) and wait for it; False if it was not running."""
        pid_file = self.pids / f"{name}.pid"
        if not pid_file.exists():
            return False
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.1)
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        return True
