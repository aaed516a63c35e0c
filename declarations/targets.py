"""What Kubernetes service discovery would hand Prometheus for each ServiceMonitor endpoint, without a cluster.

In a cluster, EndpointSlice discovery yields one target per ready pod address and port, labelled with
`__meta_kubernetes_*` labels taken from the Namespace, Service, EndpointSlice and Pod. Here each pod is a
local process, and each Deployment has as many as its `replicas` say: every target is built from the rendered
Service and the Deployment's pod template, with the meta labels a cluster would give that pod (its name in
the ReplicaSet form `<deployment>-<pod-template-hash>-<suffix>`, the `pod-template-hash` label) and the
values of a local process (its IP is 127.0.0.1, its node this host).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from declarations.manifests import Obj, RenderError, of_kind
from declarations.selectors import selector_matches, service_selects

LOCAL_IP = "127.0.0.1"
# The alphabet Kubernetes names generated objects with (apimachinery's rand.SafeEncodeString): no vowels,
# no look-alike characters.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _safe_encode(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:length])


def pod_template_hash(deployment: Obj) -> str:
    """A stand-in for the ReplicaSet controller's hash of the pod template: it changes exactly when the
    template does (a rollout), and is stable otherwise."""
    return _safe_encode(json.dumps(deployment["spec"]["template"], sort_keys=True), 10)


def replicas(deployment: Obj) -> int:
    """Pods the Deployment asks for (Kubernetes' default is 1 when unset)."""
    return int(deployment["spec"].get("replicas", 1))


@dataclass(frozen=True)
class Target:
    """One scrape target as a cluster would discover it: a container port of a pod behind a Service."""

    job_name: str
    monitor: Obj
    endpoint: Obj
    service: Obj
    service_port: Obj | None  # None: a container port the Service does not expose (reached by `targetPort`)
    deployment: Obj
    container: Obj
    container_port: Obj
    replica: int = 0  # which of the Deployment's pods

    @property
    def namespace(self) -> str:
        return self.service["metadata"]["namespace"]

    @property
    def port(self) -> int:
        return int(self.container_port["containerPort"])

    @property
    def pod_template(self) -> Obj:
        return self.deployment["spec"]["template"]

    @property
    def replica_set(self) -> str:
        return f"{self.deployment['metadata']['name']}-{pod_template_hash(self.deployment)}"

    @property
    def pod_name(self) -> str:
        # The suffix is random in a cluster; here it is fixed per replica so a restarted stack keeps its series.
        return f"{self.replica_set}-{_safe_encode(f'{self.replica_set}/{self.replica}', 5)}"


def node_name() -> str:
    return socket.gethostname().split(".")[0]


def label_name(key: str) -> str:
    """A Kubernetes label key as a Prometheus label name: every character outside [a-zA-Z0-9_] becomes `_`
    (what Kubernetes discovery and the operator's sanitizeLabelName both do)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def namespaces(monitor: Obj) -> set[str] | None:
    """The namespaces a ServiceMonitor looks in; None means all."""
    selector = monitor["spec"].get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return set(selector.get("matchNames") or [monitor["metadata"]["namespace"]])


def targets(objects: Iterable[Obj]) -> list[Target]:
    """Every (ServiceMonitor endpoint, Service, pod, container port) the operator would scrape, pods in the
    order of their Deployments in the manifests."""
    objects = list(objects)
    services = of_kind(objects, "Service")
    deployments = of_kind(objects, "Deployment")
    found: list[Target] = []
    for monitor in of_kind(objects, "ServiceMonitor"):
        ns, name = monitor["metadata"]["namespace"], monitor["metadata"]["name"]
        where = namespaces(monitor)
        selected = [
            s
            for s in services
            if (where is None or s["metadata"]["namespace"] in where)
            and selector_matches(monitor["spec"]["selector"], s["metadata"].get("labels") or {})
        ]
        if not selected:
            raise RenderError(
                f"ServiceMonitor {ns}/{name} selects no Service: make spec.selector match a Service's labels "
                f"in {sorted(where) if where else 'any namespace'}"
            )
        for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
            job = f"serviceMonitor/{ns}/{name}/{index}"
            for service in selected:
                found.extend(_resolve(job, monitor, endpoint, service, deployments))
    return found


def _pods(service: Obj, deployments: list[Obj]) -> list[Obj]:
    return [
        d
        for d in deployments
        if d["metadata"]["namespace"] == service["metadata"]["namespace"]
        and service_selects(service["spec"].get("selector"), d["spec"]["template"]["metadata"].get("labels") or {})
    ]


def _container_ports(deployments: list[Obj]) -> Iterable[tuple[Obj, Obj, Obj]]:
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for port in container.get("ports") or []:
                yield deployment, container, port


def _resolve(job: str, monitor: Obj, endpoint: Obj, service: Obj, deployments: list[Obj]) -> list[Target]:
    """One target per pod of every Deployment the Service selects, on the container port the endpoint names."""
    name = service["metadata"]["name"]
    pods = _pods(service, deployments)
    if not pods:
        raise RenderError(f"{job}: Service {name} selects no Deployment's pods")
    if endpoint.get("port"):
        service_port = next((p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]), None)
        if service_port is None:
            raise RenderError(f"{job}: Service {name} has no port named {endpoint['port']!r}")
        wanted = service_port.get("targetPort", service_port["port"])
    elif endpoint.get("targetPort") not in (None, ""):
        wanted, service_port = endpoint["targetPort"], None
    else:
        raise RenderError(f"{job}: the endpoint needs `port` (a Service port name) or `targetPort`")
    found: list[Target] = []
    for deployment in pods:
        for _, container, port in _container_ports([deployment]):
            if wanted not in (port.get("name"), port["containerPort"]):
                continue
            leads_here = service_port
            if leads_here is None:
                # The Service port that leads to this container port, if any: discovery reports its name.
                leads_here = next(
                    (
                        p
                        for p in service["spec"]["ports"]
                        if p.get("targetPort") in (port.get("name"), port["containerPort"])
                    ),
                    None,
                )
            found += [
                Target(job, monitor, endpoint, service, leads_here, deployment, container, port, replica)
                for replica in range(replicas(deployment))
            ]
            break
    if not found:
        raise RenderError(f"{job}: no container port of Service {name}'s pods matches {wanted!r}")
    return found


def _labels(prefix: str, labels: dict[str, str] | None) -> dict[str, str]:
    out = {}
    for key, value in (labels or {}).items():
        out[f"__meta_kubernetes_{prefix}_{label_name(key)}"] = str(value)
        out[f"__meta_kubernetes_{prefix}present_{label_name(key)}"] = "true"
    return out


def meta_labels(target: Target) -> dict[str, str]:
    """The `__meta_kubernetes_*` labels EndpointSlice discovery gives this target in a cluster (its pod, ready)."""
    service, pod = target.service, target.pod_template["metadata"]
    slice_ = "__meta_kubernetes_endpointslice"
    labels = {
        "__meta_kubernetes_namespace": target.namespace,
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        **_labels("service_label", service["metadata"].get("labels")),
        **_labels("service_annotation", service["metadata"].get("annotations")),
        f"{slice_}_name": f"{service['metadata']['name']}-local",
        f"{slice_}_address_type": "IPv4",
        f"{slice_}_endpoint_conditions_ready": "true",
        f"{slice_}_address_target_kind": "Pod",
        f"{slice_}_address_target_name": target.pod_name,
        "__meta_kubernetes_pod_name": target.pod_name,
        "__meta_kubernetes_pod_ip": LOCAL_IP,
        "__meta_kubernetes_pod_host_ip": LOCAL_IP,
        "__meta_kubernetes_pod_node_name": node_name(),
        "__meta_kubernetes_pod_ready": "true",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_controller_kind": "ReplicaSet",
        "__meta_kubernetes_pod_controller_name": target.replica_set,
        # The ReplicaSet controller adds this label to every pod it creates.
        **_labels(
            "pod_label", {**(pod.get("labels") or {}), "pod-template-hash": pod_template_hash(target.deployment)}
        ),
        **_labels("pod_annotation", pod.get("annotations")),
        "__meta_kubernetes_pod_container_name": target.container["name"],
        "__meta_kubernetes_pod_container_image": str(target.container.get("image", "")),
        "__meta_kubernetes_pod_container_init": "false",
        "__meta_kubernetes_pod_container_port_number": str(target.port),
        "__meta_kubernetes_pod_container_port_protocol": target.container_port.get("protocol", "TCP"),
    }
    if target.container_port.get("name"):
        labels["__meta_kubernetes_pod_container_port_name"] = target.container_port["name"]
    if target.service_port is not None:
        labels[f"{slice_}_port"] = str(target.port)
        labels[f"{slice_}_port_protocol"] = target.service_port.get("protocol", "TCP")
        if target.service_port.get("name"):
            labels[f"{slice_}_port_name"] = target.service_port["name"]
    return labels
