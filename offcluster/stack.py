"""The local stack as one object: its config files, its processes, its URLs.

`up` renders the manifests, writes every config file (`offcluster.config`, `offcluster.grafana`), and starts
what is not running yet (`offcluster.supervisor`) of the processes `offcluster.services` defines: the webhook
sink, Alertmanager, one gunicorn master per pod the Deployments ask for (`offcluster.pods`), Prometheus and,
when installed, Grafana. `down` stops them from any shell; nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from declarations.manifests import LOADTEST, MANIFESTS, ROOT, render
from offcluster import config as stack_config
from offcluster import grafana
from offcluster.pods import LocalPod, local_pods
from offcluster.services import StackError, StateFiles, check_ports, services
from offcluster.supervisor import NotReady, Service, Supervisor

# Stop order: Grafana and Prometheus first, so neither records the pods' shutdown as an outage; the pods
# (named after themselves) between Prometheus and Alertmanager.
FIRST, LAST = ("grafana", "prometheus"), ("alertmanager", "webhook")
# Grafana migrates its database on first start: slower than the rest on a small machine.
GRAFANA_START_TIMEOUT = 120.0


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
        self.files = StateFiles(self.state)
        self.alerts_file = self.files.alerts
        self.prometheus_file = self.files.prometheus
        self.rules_file = self.files.rules
        self.alertmanager_file = self.files.alertmanager
        self.grafana_dir = self.files.grafana
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
        """Every process of the stack, in start order."""
        return services(self.files, self.ports, self.pods, self.grafana, self.workers, self.pod_model_dir)

    def secret(self, name: str, key: str) -> str:
        return self.files.secret(name, key)

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
        check_ports(wanted, running, {pod.name for pod in self.pods})
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
