"""Starting and stopping the local stack's processes: the app, Prometheus, Alertmanager and a webhook sink.

Every process runs in its own session with its pid in `<state>/pids/`, its log in `<state>/logs/`, so
`down` finds and stops them from any shell, and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from offcluster import config as stack_config
from offcluster.manifests import MANIFESTS, ROOT, RenderError, render

GUNICORN_ARGS = ["-c", "app/gunicorn.conf.py", "app.wsgi:app"]
DEBIAN_PACKAGES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


class StackError(RuntimeError):
    """A problem the user can fix; the message says how, in one line."""


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    ready_url: str
    env: dict[str, str]


def find_binary(name: str) -> str:
    candidates = [os.environ.get(f"{name.upper()}_BIN", ""), name, f"prometheus-{name}"]
    for candidate in filter(None, candidates):
        path = shutil.which(candidate)
        if path:
            return path
    raise StackError(
        f"{name} is not installed: `sudo apt-get install {DEBIAN_PACKAGES[name]}` (or `make deps` as root), "
        f"or set {name.upper()}_BIN to its path"
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


class Stack:
    def __init__(
        self,
        state: Path,
        ports: stack_config.Ports,
        scrape_interval: str | None = None,
        evaluation_interval: str | None = None,
        workers: int = 2,
        manifests: Path = MANIFESTS,
        rule_transform: Callable[[dict], dict] | None = None,
        alertmanager_transform: Callable[[dict], dict] | None = None,
    ) -> None:
        self.state = state.resolve()
        self.ports = ports
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.workers = workers
        self.manifests = manifests
        # Tests compress time (`for:`, group_wait) with these; names, labels and routes stay as declared.
        self.rule_transform = rule_transform
        self.alertmanager_transform = alertmanager_transform
        self.pids = self.state / "pids"
        self.logs = self.state / "logs"
        self.model_dir = self.state / "model"
        self.alerts_file = self.state / "alerts.jsonl"

    # -- configuration ---------------------------------------------------------------------------------
    def write_config(self) -> dict[str, object]:
        """Render the manifests and write every config file; returns what a caller may want to show."""
        objects = render(self.manifests)
        rules_file = self.state / "prometheus" / "rules.yaml"
        built = stack_config.build(objects, self.ports, rules_file, self.scrape_interval, self.evaluation_interval)
        rules = self.rule_transform(built.rules) if self.rule_transform else built.rules
        alertmanager = built.alertmanager
        if self.alertmanager_transform:
            alertmanager = self.alertmanager_transform(alertmanager)
        files = {
            self.state / "prometheus" / "prometheus.yml": built.prometheus,
            rules_file: rules,
            self.state / "alertmanager" / "alertmanager.yml": alertmanager,
        }
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        env = stack_config.app_environment(objects, self.ports)
        return {"objects": objects, "app_env": env}

    def services(self, app_env: dict[str, str]) -> list[Service]:
        prometheus, alertmanager = find_binary("prometheus"), find_binary("alertmanager")
        app_port, _metrics_port = int(app_env["PORT"]), int(app_env["METRICS_PORT"])
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        return [
            Service(
                "webhook",
                [sys.executable, "-m", "offcluster.webhook", "--port", str(self.ports.webhook),
                 "--out", str(self.alerts_file)],
                f"http://127.0.0.1:{self.ports.webhook}/healthz",
                {},
            ),
            Service(
                "alertmanager",
                [alertmanager, f"--config.file={self.state / 'alertmanager' / 'alertmanager.yml'}",
                 f"--storage.path={self.state / 'alertmanager' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.ports.alertmanager}",
                 # An empty address turns off clustering, which would otherwise bind 0.0.0.0:9094.
                 "--cluster.listen-address="],
                f"http://127.0.0.1:{self.ports.alertmanager}/-/ready",
                {},
            ),
            Service(
                "app",
                [gunicorn, *GUNICORN_ARGS],
                f"http://127.0.0.1:{app_port}/readyz",
                {
                    **app_env,
                    "HOST": "127.0.0.1",
                    "METRICS_HOST": "127.0.0.1",
                    "MODEL_DIR": str(self.model_dir),
                    "PROMETHEUS_MULTIPROC_DIR": str(self.state / "multiproc"),
                    "WEB_CONCURRENCY": str(self.workers),
                },
            ),
            Service(
                "prometheus",
                [prometheus, f"--config.file={self.state / 'prometheus' / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.state / 'prometheus' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
                 "--web.enable-lifecycle", "--storage.tsdb.retention.time=2d"],
                f"http://127.0.0.1:{self.ports.prometheus}/-/ready",
                {},
            ),
        ]  # fmt: skip

    # -- processes -------------------------------------------------------------------------------------
    def running(self) -> dict[str, int]:
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

    def train_if_missing(self) -> None:
        if (self.model_dir / "metadata.json").exists():
            return
        subprocess.run(
            [sys.executable, "-m", "app.train", "--out", str(self.model_dir)], cwd=ROOT, check=True, timeout=300
        )

    @contextlib.contextmanager
    def _exclusive(self):
        # Two `make up`s at once would both find a service stopped and both start it.
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, timeout: float = 60.0) -> dict[str, str]:
        """Start whatever is not running; returns the URLs. Idempotent."""
        with self._exclusive():
            return self._up(timeout)

    def _up(self, timeout: float) -> dict[str, str]:
        written = self.write_config()
        services = self.services(written["app_env"])  # type: ignore[arg-type]
        running = self.running()
        wanted = [s for s in services if s.name not in running]
        ports = {
            "webhook": self.ports.webhook,
            "alertmanager": self.ports.alertmanager,
            "app": int(written["app_env"]["PORT"]),  # type: ignore[index]
            "metrics": int(written["app_env"]["METRICS_PORT"]),  # type: ignore[index]
            "prometheus": self.ports.prometheus,
        }
        for service in wanted:
            names = [service.name] + (["metrics"] if service.name == "app" else [])
            for name in names:
                if not port_free(ports[name]):
                    raise StackError(
                        f"port {ports[name]} ({name}) is in use: stop what holds it (`make down`, or `ss -ltnp`) "
                        f"or choose another, e.g. `make up {name.upper()}_PORT=...`"
                    )
        self.train_if_missing()
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for service in wanted:
            log = (self.logs / f"{service.name}.log").open("ab")
            process = subprocess.Popen(
                service.command,
                cwd=ROOT,
                env={**os.environ, **service.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            (self.pids / f"{service.name}.pid").write_text(str(process.pid))
            self._wait_ready(service, process, timeout)
        if "prometheus" in running:
            # Rules and scrape jobs were just rewritten: a Prometheus that was already up reloads them.
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{self.ports.prometheus}/-/reload", method="POST"), timeout=10
            ).close()
        return self.urls(written["app_env"])  # type: ignore[arg-type]

    def _wait_ready(self, service: Service, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if http_ok(service.ready_url, timeout=1.0):
                return
            time.sleep(0.2)
        tail = (self.logs / f"{service.name}.log").read_text(errors="replace").splitlines()[-15:]
        self._down()
        raise StackError(
            f"{service.name} did not become ready at {service.ready_url} "
            f"(see {self.logs / (service.name + '.log')}):\n  " + "\n  ".join(tail)
        )

    def urls(self, app_env: dict[str, str]) -> dict[str, str]:
        return {
            "app": f"http://127.0.0.1:{app_env['PORT']}",
            "metrics": f"http://127.0.0.1:{app_env['METRICS_PORT']}/metrics",
            "prometheus": f"http://127.0.0.1:{self.ports.prometheus}",
            "alertmanager": f"http://127.0.0.1:{self.ports.alertmanager}",
            "alerts received": str(self.alerts_file),
        }

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 35.0) -> None:
        """Stop one service (its whole process group) and wait for it; gunicorn gets its grace period."""
        pid_file = self.pids / f"{name}.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.1)
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)

    def down(self) -> list[str]:
        with self._exclusive():
            return self._down()

    def _down(self) -> list[str]:
        stopped = []
        # Prometheus first, so it does not record the app's shutdown as an outage that pages.
        for name in ("prometheus", "app", "alertmanager", "webhook"):
            if (self.pids / f"{name}.pid").exists():
                self.stop(name)
                stopped.append(name)
        return stopped

    def alerts(self) -> list[dict]:
        if not self.alerts_file.exists():
            return []
        return [json.loads(line) for line in self.alerts_file.read_text().splitlines() if line.strip()]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader still counts as a group member until reaped; Popen objects are gone after `up`.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    return _has_live_member(pgid)


def _has_live_member(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


__all__ = ["RenderError", "Stack", "StackError"]
