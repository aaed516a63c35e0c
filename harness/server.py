"""THE gunicorn command (`gunicorn -c app/gunicorn.conf.py app.wsgi:app`) started on free 127.0.0.1 ports.

Tests and benchmarks start the service only through `start_server`, so both measure what the container runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from declarations.paths import ROOT

GUNICORN = [str(Path(sys.executable).with_name("gunicorn")), "-c", "app/gunicorn.conf.py", "app.wsgi:app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (the local stack's pod i listens on the first metrics port + i)."""
    while True:
        first = free_port()
        if all(_bindable(first + i) for i in range(count)):
            return first


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Server:
    process: subprocess.Popen
    app: str
    metrics: str
    multiproc: Path
    log: Path

    def scrape(self) -> str:
        return requests.get(self.metrics, timeout=5).text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait(5)
        return self.process.returncode


def start_server(tmp: Path, model_dir: Path, workers: int = 2, config: Path | None = None, **env: str) -> Server:
    """THE gunicorn command on free 127.0.0.1 ports (`config` replaces app/gunicorn.conf.py, for experiments)."""
    app_port, metrics_port = free_port(), free_port()
    log = tmp / "gunicorn.log"
    multiproc = tmp / "multiproc"
    command = GUNICORN if config is None else [GUNICORN[0], "-c", str(config), *GUNICORN[3:]]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(app_port),
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
            "MODEL_DIR": str(model_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "WEB_CONCURRENCY": str(workers),
            **env,
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(process, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{metrics_port}/metrics", multiproc, log)
    try:
        wait_for(f"{server.app}/healthz", process=process)
        wait_for(server.metrics, process=process)
    except Exception:
        server.stop(signal.SIGKILL)
        raise RuntimeError(log.read_text()[-3000:]) from None
    return server
