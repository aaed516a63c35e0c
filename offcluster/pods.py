"""The local pods: one gunicorn master per pod the Deployments ask for, as the ServiceMonitor's targets name them.

Every pod runs THE gunicorn command with its container's declared environment. What a cluster gives each pod
and a single host cannot, is replaced:
- its own network namespace: the Service's port (the container's `PORT`) is bound by every pod with
  SO_REUSEPORT (gunicorn's `reuse_port`, switched on through `GUNICORN_CMD_ARGS` so the command and the config
  file stay as the image runs them), and the kernel spreads new connections over the pods' listening sockets;
- its own IP for the metrics port: each pod gets its own local `METRICS_PORT`, the first one's plus its index;
- its own image: a Deployment whose pod template carries the `TRAIN_ARGS_ANNOTATION` serves a model trained
  with those arguments (the image that Deployment names is built with the same `--build-arg TRAIN_ARGS`);
- the Secrets its env names (`secretKeyRef`): the stack makes each one up once (offcluster.stack), the same for
  every pod, as an operator creates one Secret for every Deployment.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from declarations.manifests import Obj, RenderError
from declarations.targets import Target, targets

TRAIN_ARGS_ANNOTATION = "ml-observability/train-args"
REUSE_PORT = "--reuse-port"


@dataclass(frozen=True)
class LocalPod:
    name: str
    deployment: str
    labels: dict[str, str]
    env: dict[str, str]  # the container's literal env, with the local ports
    train_args: tuple[str, ...]
    declared_ports: dict[str, int]  # PORT / METRICS_PORT as the container declares them
    secret_env: tuple[tuple[str, str, str], ...] = ()  # (variable, Secret name, key) of each secretKeyRef

    @property
    def app_port(self) -> int:
        return int(self.env["PORT"])

    @property
    def metrics_port(self) -> int:
        return int(self.env["METRICS_PORT"])


def train_args(deployment: Obj) -> tuple[str, ...]:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    return tuple(shlex.split(annotations.get(TRAIN_ARGS_ANNOTATION, "")))


def local_pods(objects: Iterable[Obj], app_port: int | None = None, metrics_port: int | None = None) -> list[LocalPod]:
    """The pods behind the ServiceMonitors' targets, in manifest order. `app_port` (shared) and `metrics_port`
    (the first pod's; pod i gets it + i) replace the declared ports; None keeps the declared ones."""
    pods: dict[str, LocalPod] = {}
    for target in targets(objects):
        if target.pod_name in pods:
            continue
        env = {e["name"]: e["value"] for e in target.container.get("env", []) if "value" in e}
        missing = {"PORT", "METRICS_PORT"} - set(env)
        if missing:
            raise RenderError(f"container {target.container['name']} declares no literal {', '.join(sorted(missing))}")
        declared = {name: int(env[name]) for name in ("PORT", "METRICS_PORT")}
        if app_port is not None:
            env["PORT"] = str(app_port)
        env["METRICS_PORT"] = str((metrics_port or declared["METRICS_PORT"]) + len(pods))
        pods[target.pod_name] = LocalPod(
            name=target.pod_name,
            deployment=target.deployment["metadata"]["name"],
            labels=dict(target.pod_template["metadata"].get("labels") or {}),
            env=env,
            train_args=train_args(target.deployment),
            declared_ports=declared,
            secret_env=tuple(
                (e["name"], ref["name"], ref["key"])
                for e in target.container.get("env", [])
                if (ref := (e.get("valueFrom") or {}).get("secretKeyRef"))
            ),
        )
    if len({p.app_port for p in pods.values()}) > 1:
        raise RenderError("the Service's pods declare different PORTs: one local port cannot be shared by them")
    return list(pods.values())


def local_port(pods: Iterable[LocalPod]):
    """target -> the local port its process listens on (the pod's own metrics port, the shared app port)."""
    by_name = {p.name: p for p in pods}

    def port(target: Target) -> int:
        pod = by_name.get(target.pod_name)
        if pod is None:
            return target.port
        if target.port == pod.declared_ports["METRICS_PORT"]:
            return pod.metrics_port
        if target.port == pod.declared_ports["PORT"]:
            return pod.app_port
        return target.port

    return port
