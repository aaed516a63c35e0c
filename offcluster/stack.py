"""The local stack as one object: its config files, its processes, its URLs.

`up` renders the manifests, writes every config file (`offcluster.config`, `offcluster.grafana`), and starts
what is not running yet (`offcluster.supervisor`): the webhook sink, Alertmanager, one gunicorn master per pod
the Deployments ask for (`offcluster.pods`), Prometheus and, when installed, Grafana. `down` stops them from
any shell; nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from declarations.manifests import LOADTEST, MANIFESTS, ROOT, render
from offcluster import config as stack_config
from offcluster import grafana
from offcluster.pods import REUSE_PORT, LocalPod, local_pods
from offcluster.supervisor import NotReady, Service, Supervisor, port_free

GUNICORN_ARGS = ["-c", "app/gunicorn.conf.py", "app.wsgi:app"]
DEBIAN_PACKAGES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}
# Stop order: Grafana and Prometheus first, so neither records the pods' shutdown as an outage; the pods
# (named after themselves) between Prometheus and Alertmanager.
FIRST, LAST = ("grafana", "prometheus"), ("alertmanager", "webhook")
# Grafana migrates its database on first start: slower than the rest on a small machine.
GRAFANA_START_TIMEOUT = 120.0


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
        with_grafana: bool = True,
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
        # The model of the pods whose image is trained with the default arguments; others get their own.
        self.model_dir = self.state / "model"
        self.alerts_file = self.state / "alerts.jsonl"
        self.prometheus_file = self.state / "prometheus" / "prometheus.yml"
        self.rules_file = self.state / "prometheus" / "rules.yaml"
        self.alertmanager_file = self.state / "alertmanager" / "alertmanager.yml"
        self.grafana_dir = self.state / "grafana"
        self.supervisor = Supervisor(self.state / "pids", self.state / "logs", ROOT)
        self._pods: list[LocalPod] | None = None
        # Lines to show the user beside the URLs: what runs without Grafana, and why.
        self.notes: list[str] = []
        try:
            self.grafana = grafana.find() if with_grafana else None
        except grafana.GrafanaNotFound as exc:
            raise StackError(str(exc)) from exc

    # -- configuration ---------------------------------------------------------------------------------
    @property
    def pods(self) -> list[LocalPod]:
        """The pods the manifests' Deployments ask for, with their local ports."""
        if self._pods is None:
            self._pods = local_pods(render(self.manifests), self.ports.app, self.ports.metrics)
        return self._pods

    def pod_model_dir(self, pod: LocalPod) -> Path:
        if not pod.train_args:
            return self.model_dir
        return self.state / "models" / "_".join(a.strip("-").replace("/", "_") for a in pod.train_args)

    def write_config(self) -> None:
        """Render the manifests and write every config file."""
        objects = render(self.manifests)
        built = stack_config.build(
            objects, self.ports, self.rules_file, self.scrape_interval, self.evaluation_interval,
            loadtest_objects=render(LOADTEST),
        )  # fmt: skip
        if self.rule_transform:
            built = stack_config.StackConfig(built.prometheus, self.rule_transform(built.rules), built.alertmanager)
        if self.alertmanager_transform:
            built = stack_config.StackConfig(
                built.prometheus, built.rules, self.alertmanager_transform(built.alertmanager)
            )
        stack_config.write(built, self.prometheus_file, self.rules_file, self.alertmanager_file)
        self._pods = local_pods(objects, self.ports.app, self.ports.metrics)
        urls = self.urls
        grafana.write(
            self.grafana_dir, self.ports.grafana, urls["prometheus"], urls["alertmanager"],
            built.prometheus["global"]["scrape_interval"],
        )  # fmt: skip

    def services(self) -> list[Service]:
        prometheus, alertmanager = find_binary("prometheus"), find_binary("alertmanager")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        services = [
            Service(
                "webhook",
                [sys.executable, "-m", "offcluster.webhook", "--port", str(self.ports.webhook),
                 "--out", str(self.alerts_file)],
                f"http://127.0.0.1:{self.ports.webhook}/healthz",
                ports=(self.ports.webhook,),
            ),
            Service(
                "alertmanager",
                [alertmanager, f"--config.file={self.alertmanager_file}",
                 f"--storage.path={self.state / 'alertmanager' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.ports.alertmanager}",
                 # An empty address turns off clustering, which would otherwise bind 0.0.0.0:9094.
                 "--cluster.listen-address="],
                f"http://127.0.0.1:{self.ports.alertmanager}/-/ready",
                ports=(self.ports.alertmanager,),
            ),
            *(self._pod_service(gunicorn, pod) for pod in self.pods),
            Service(
                "prometheus",
                [prometheus, f"--config.file={self.prometheus_file}",
                 f"--storage.tsdb.path={self.state / 'prometheus' / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
                 "--web.enable-lifecycle", "--storage.tsdb.retention.time=2d"],
                f"http://127.0.0.1:{self.ports.prometheus}/-/ready",
                ports=(self.ports.prometheus,),
            ),
        ]  # fmt: skip
        if self.grafana is not None:
            services.append(
                Service(
                    "grafana",
                    self.grafana.command(self.grafana_dir / "grafana.ini"),
                    f"http://127.0.0.1:{self.ports.grafana}/api/health",
                    ports=(self.ports.grafana,),
                )
            )
        return services

    def _pod_service(self, gunicorn: str, pod: LocalPod) -> Service:
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
                "MODEL_DIR": str(self.pod_model_dir(pod)),
                "PROMETHEUS_MULTIPROC_DIR": str(self.state / "multiproc" / pod.name),
                "WEB_CONCURRENCY": str(self.workers),
                "GUNICORN_CMD_ARGS": f"{inherited} {REUSE_PORT}".strip(),
                **{name: self.secret(secret, key) for name, secret, key in pod.secret_env},
            },
            ports=(pod.app_port, pod.metrics_port),
        )

    def secret(self, name: str, key: str) -> str:
        """The value of a Secret's key the pods' env names: made up once per stack state (32 random bytes, hex),
        kept in the state directory so that restarted pods get the same one."""
        path = self.state / "secrets" / name / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32))
        return path.read_text()

    # -- processes -------------------------------------------------------------------------------------
    def running(self) -> dict[str, int]:
        return self.supervisor.running()

    def train_if_missing(self) -> None:
        for pod in self.pods:
            out = self.pod_model_dir(pod)
            metadata = out / "metadata.json"
            # An artefact from before the loader checked model files records no digest: it would never load.
            if metadata.exists() and "model_sha256" in json.loads(metadata.read_text()):
                continue
            subprocess.run(
                [sys.executable, "-m", "app.train", "--out", str(out), *pod.train_args], cwd=ROOT, check=True,
                timeout=300,
            )  # fmt: skip

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
        self.write_config()
        running = self.running()
        wanted = [s for s in self.services() if s.name not in running]
        pods = {pod.name for pod in self.pods}
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
        self.notes = [] if self.grafana is not None else [grafana.INSTALL_HINT]
        self.train_if_missing()
        for service in wanted:
            limit = max(timeout, GRAFANA_START_TIMEOUT) if service.name == "grafana" else timeout
            try:
                self.supervisor.start(service, limit)
            except NotReady as exc:
                if service.name == "grafana":
                    # The dashboard is a view on the rest: without it the stack is still whole.
                    self.supervisor.stop("grafana")
                    self.grafana = None
                    self.notes.append(f"grafana: did not start (see {exc.log}); the stack runs without it")
                    continue
                self._down()
                raise StackError(str(exc)) from None
        if "prometheus" in running:
            # Rules and scrape jobs were just rewritten: a Prometheus that was already up reloads them.
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{self.ports.prometheus}/-/reload", method="POST"), timeout=10
            ).close()
        return self.urls

    @property
    def urls(self) -> dict[str, str]:
        """Where each part of the stack answers (Grafana and its dashboards only when Grafana is installed)."""
        urls = {
            "app": f"http://127.0.0.1:{self.pods[0].app_port}",
            **{f"metrics {pod.name}": f"http://127.0.0.1:{pod.metrics_port}/metrics" for pod in self.pods},
            "prometheus": f"http://127.0.0.1:{self.ports.prometheus}",
            "alertmanager": f"http://127.0.0.1:{self.ports.alertmanager}",
            "alerts received": str(self.alerts_file),
            # Up while a locust master runs there (make demo's runs, `locust ... --web-port`).
            "locust": f"http://127.0.0.1:{self.ports.locust}",
        }
        if self.grafana is not None:
            urls["grafana"] = f"http://127.0.0.1:{self.ports.grafana}"
            for uid in grafana.dashboards():
                urls[f"dashboard {uid}"] = f"{urls['grafana']}/d/{uid}"
        return urls

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 35.0) -> None:
        """Stop one service or pod (its whole process group) and wait for it; gunicorn gets its grace period."""
        self.supervisor.stop(name, sig, timeout)

    def down(self) -> list[str]:
        with self._exclusive():
            return self._down()

    def _down(self) -> list[str]:
        running = self.running()
        pods = sorted(set(running) - set(FIRST) - set(LAST))
        return [name for name in (*FIRST, *pods, *LAST) if self.supervisor.stop(name)]

    def alerts(self) -> list[dict]:
        if not self.alerts_file.exists():
            return []
        return [json.loads(line) for line in self.alerts_file.read_text().splitlines() if line.strip()]
