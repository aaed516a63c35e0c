"""The local stack's processes: the command line, health URL, environment and ports of each, and the files
they read and write under the stack's state directory. `offcluster.stack` starts and stops them."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from offcluster import grafana as grafana_server
from offcluster.config import Ports
from offcluster.pods import REUSE_PORT, LocalPod
from offcluster.supervisor import Service, port_free

GUNICORN_ARGS = ["-c", "app/gunicorn.conf.py", "app.wsgi:app"]
DEBIAN_PACKAGES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


class StackError(RuntimeError):
    """A problem the user can fix; the message says how, in one line."""


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


@dataclass(frozen=True)
class StateFiles:
    """Where the stack keeps its configuration, data and the alerts it received, under one state directory."""

    state: Path

    @property
    def alerts(self) -> Path:
        return self.state / "alerts.jsonl"

    @property
    def prometheus(self) -> Path:
        return self.state / "prometheus" / "prometheus.yml"

    @property
    def rules(self) -> Path:
        return self.state / "prometheus" / "rules.yaml"

    @property
    def alertmanager(self) -> Path:
        return self.state / "alertmanager" / "alertmanager.yml"

    @property
    def grafana(self) -> Path:
        return self.state / "grafana"

    def secret(self, name: str, key: str) -> str:
        """The value of a Secret's key the pods' env names: made up once per stack state (32 random bytes,
        hex), kept in the state directory so that restarted pods get the same one."""
        path = self.state / "secrets" / name / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32))
        return path.read_text()


def pod_service(files: StateFiles, pod: LocalPod, workers: int, model_dir: Path) -> Service:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    inherited = os.environ.get("GUNICORN_CMD_ARGS", "")
    return Service(
        pod.name,
        [gunicorn, *GUNICORN_ARGS],
        # The metrics port is the pod's own; the app port answers from whichever pod the kernel picks.
        f"http://127.0.0.1:{pod.metrics_port}/metrics",
        {
            **pod.env,
            "HOST": "127.0.0.1",
            "METRICS_HOST": "127.0.0.1",
            "MODEL_DIR": str(model_dir),
            "PROMETHEUS_MULTIPROC_DIR": str(files.state / "multiproc" / pod.name),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_CMD_ARGS": f"{inherited} {REUSE_PORT}".strip(),
            **{name: files.secret(secret, key) for name, secret, key in pod.secret_env},
        },
        ports=(pod.app_port, pod.metrics_port),
    )


def services(
    files: StateFiles,
    ports: Ports,
    pods: Iterable[LocalPod],
    grafana: grafana_server.Installation | None,
    workers: int,
    model_dir: Callable[[LocalPod], Path],
) -> list[Service]:
    """Every process of the stack, in start order: the webhook sink, Alertmanager, the pods, Prometheus, Grafana."""
    prometheus, alertmanager = find_binary("prometheus"), find_binary("alertmanager")
    state = files.state
    found = [
        Service(
            "webhook",
            [sys.executable, "-m", "offcluster.webhook", "--port", str(ports.webhook), "--out", str(files.alerts)],
            f"http://127.0.0.1:{ports.webhook}/healthz",
            ports=(ports.webhook,),
        ),
        Service(
            "alertmanager",
            [alertmanager, f"--config.file={files.alertmanager}",
             f"--storage.path={state / 'alertmanager' / 'data'}",
             f"--web.listen-address=127.0.0.1:{ports.alertmanager}",
             # An empty address turns off clustering, which would otherwise bind 0.0.0.0:9094.
             "--cluster.listen-address="],
            f"http://127.0.0.1:{ports.alertmanager}/-/ready",
            ports=(ports.alertmanager,),
        ),
        *(pod_service(files, pod, workers, model_dir(pod)) for pod in pods),
        Service(
            "prometheus",
            [prometheus, f"--config.file={files.prometheus}",
             f"--storage.tsdb.path={state / 'prometheus' / 'data'}",
             f"--web.listen-address=127.0.0.1:{ports.prometheus}",
             "--web.enable-lifecycle", "--storage.tsdb.retention.time=2d"],
            f"http://127.0.0.1:{ports.prometheus}/-/ready",
            ports=(ports.prometheus,),
        ),
    ]  # fmt: skip
    if grafana is not None:
        found.append(
            Service(
                "grafana",
                grafana.command(files.grafana / "grafana.ini"),
                f"http://127.0.0.1:{ports.grafana}/api/health",
                ports=(ports.grafana,),
            )
        )
    return found


def check_ports(wanted: Iterable[Service], running: dict[str, int], pods: set[str]) -> None:
    """Refuse to start when a port a service needs is taken, naming the variable that moves it."""
    app_port_shared = any(name in running for name in pods)
    for service in wanted:
        for port in service.ports:
            if service.name in pods and port == service.ports[0] and app_port_shared:
                continue  # a running pod holds the shared port: the others join it
            if not port_free(port):
                variable = service.name.upper()
                if service.name in pods:
                    variable = "APP" if port == service.ports[0] else "METRICS"
                raise StackError(
                    f"port {port} ({service.name}) is in use: stop what holds it (`make down`, or `ss -ltnp`) "
                    f"or choose another, e.g. `make up {variable}_PORT=...`"
                )
