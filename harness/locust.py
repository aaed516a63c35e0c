"""locust's master/worker mode as real processes on 127.0.0.1: one master (web UI and /metrics on `web_port`)
and `workers` worker processes, all running loadtest/locustfile.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.server import ROOT, free_port, wait_for
from harness.stack import LOCUST

LOCUSTFILE = str(ROOT / "loadtest" / "locustfile.py")


@dataclass
class Distributed:
    master: subprocess.Popen
    workers: list[subprocess.Popen]
    web: str
    out: Path
    logs: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> str:
        return f"{self.web}/metrics"

    def stats(self) -> dict[tuple[str, str], tuple[int, int]]:
        """{(name, method): (requests, failures)} from the JSON the master writes when it quits."""
        entries = json.loads(Path(f"{self.out}.json").read_text())
        return {(e["name"], e["method"]): (e["num_requests"], e["num_failures"]) for e in entries}

    def wait(self, timeout: float) -> int:
        """The master's exit code; the workers quit when it tells them to."""
        try:
            code = self.master.wait(timeout)
            for worker in self.workers:
                worker.wait(15)
            return code
        finally:
            self.stop()

    def stop(self) -> None:
        for process in (self.master, *self.workers):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def start_distributed(host: str, out: Path, workers: int, *args: str, web_port: int | None = None) -> Distributed:
    """A master that starts the run itself once `workers` workers are connected (`--autostart`, which keeps
    the web UI and so /metrics, unlike `--headless`), plus the workers. `args` go to the master (-u, -t,
    --autoquit...)."""
    web_port, master_port = web_port or free_port(), free_port()
    logs = [out.with_name(f"{out.name}-master.log")] + [
        out.with_name(f"{out.name}-worker{i}.log") for i in range(workers)
    ]
    master = subprocess.Popen(
        [LOCUST, "-f", LOCUSTFILE, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
         str(master_port), "--web-host", "127.0.0.1", "--web-port", str(web_port), "--expect-workers", str(workers),
         "--host", host, "--json-file", str(out), "--autostart", *args],
        cwd=ROOT, stdout=logs[0].open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    started = [
        subprocess.Popen(
            [LOCUST, "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)],
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs[1:]
    ]
    run = Distributed(master, started, f"http://127.0.0.1:{web_port}", out, logs)
    try:
        wait_for(run.metrics, timeout=60, process=master)
    except Exception:
        run.stop()
        raise RuntimeError(logs[0].read_text(errors="replace")[-3000:]) from None
    return run
