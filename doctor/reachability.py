"""The last hops of a ServiceMonitor endpoint: are the targets found reached? Readiness (a probe, live: ready
pods), the EndpointSlices that list them (live), and the NetworkPolicies that must admit the Prometheus pods.
"""

from __future__ import annotations

from doctor import discovery as d
from doctor.discovery import Obj, PodView, Verdict, ref
from doctor.report import SERVICE_NAME_LABEL, Cluster, Report, Target, show_port


def readiness(report: Report, cluster: Cluster, targets: list[Target]) -> None:
    """Endpoints list a pod only once it is ready; without a readiness probe it is "ready" before it answers."""
    probed = [t for t in targets if t.container.get("readinessProbe")]
    if not probed:
        pod, container = targets[0].pod, targets[0].container
        report.add(
            "readiness-probe",
            Verdict(
                False,
                f"container {container['name']} of {pod.source} has no readinessProbe: the pod joins the "
                "Endpoints before it can answer, and a wedged one never leaves them",
                f"add a readinessProbe to container {container['name']} (an HTTP GET answered once it can serve)",
            ),
        )
        return
    container = probed[0].container
    probe = container["readinessProbe"]
    how = (
        f"httpGet {probe['httpGet'].get('path', '/')} on {probe['httpGet'].get('port')}"
        if "httpGet" in probe
        else ", ".join(k for k in ("tcpSocket", "exec", "grpc") if k in probe) or "a probe"
    )
    report.add("readiness-probe", Verdict(True, f"container {container['name']} has a readinessProbe ({how})"))
    if cluster.live:
        pods = {t.pod.source: t.pod for t in targets}
        ready = [p for p in pods.values() if p.ready]
        report.add(
            "pods-ready",
            Verdict(
                bool(ready),
                f"{len(ready)}/{len(pods)} pods ready"
                + (
                    ""
                    if len(ready) == len(pods)
                    else ": not ready " + ", ".join(s for s, p in pods.items() if not p.ready)
                ),
                ""
                if ready
                else "find why the readiness probe fails with `kubectl describe pod` (Events, Conditions) and the "
                "container's logs; Prometheus keeps not-ready pods as targets, but none of them serves",
            ),
        )


def endpoint_slices(report: Report, cluster: Cluster, ports: list[tuple[Obj, Obj]]) -> None:
    """What the operator's endpoint discovery reads: the Service's EndpointSlices. Prometheus makes a target of
    every endpoint on the port, ready or not (`__meta_kubernetes_endpointslice_endpoint_conditions_ready`)."""
    total, ready, slices_seen = 0, 0, []
    for service, port in ports:
        namespace, name = service["metadata"].get("namespace", "default"), service["metadata"]["name"]
        for eps in cluster.of_kind("EndpointSlice"):
            meta = eps["metadata"]
            if meta.get("namespace") != namespace or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
                continue
            slices_seen.append(ref(eps))
            if not any(p.get("name") == port.get("name") for p in eps.get("ports") or []):
                continue
            endpoints = eps.get("endpoints") or []
            total += len(endpoints)
            # A null `ready` means ready (discovery.k8s.io/v1).
            ready += sum(1 for e in endpoints if (e.get("conditions") or {}).get("ready") is not False)
    service, port_name = ports[0][0], ports[0][1].get("name")
    name = service["metadata"]["name"]
    where = ", ".join(slices_seen) or f"no EndpointSlice labelled {SERVICE_NAME_LABEL}={name}"
    namespace = service["metadata"].get("namespace")
    if (service.get("spec") or {}).get("selector"):
        fix = (
            f"run `kubectl -n {namespace} get pods` and `kubectl -n {namespace} describe service {name}`: the "
            "pods it selects must be scheduled and hold an IP"
        )
    else:
        fix = f"{ref(service)} has no selector: whatever writes its endpoints wrote none"
    text = f"{where}: {total} endpoint(s) on port {port_name}, {ready} ready"
    report.add(
        "endpointslice",
        Verdict(bool(total), text + ("" if total else ": Prometheus has no target"), "" if total else fix),
    )


def network_policy(
    report: Report, cluster: Cluster, prometheuses: list[Obj], targets: list[tuple[PodView, Obj]]
) -> None:
    if not prometheuses:
        return
    blocked: list[tuple[PodView, Obj, Obj]] = []
    admitted: list[tuple[PodView, Obj, Obj]] = []
    for pod, cport in targets:
        for prometheus in prometheuses:
            src_ns = prometheus["metadata"].get("namespace", "default")
            allowed = d.ingress_allowed(
                cluster.policies,
                pod.namespace,
                pod.labels,
                cport.get("containerPort"),
                cport.get("name"),
                src_ns,
                cluster.ns_labels(src_ns),
                cluster.prometheus_pod_labels(prometheus),
                cport.get("protocol", "TCP"),
            )
            (admitted if allowed else blocked).append((pod, cport, prometheus))
    if admitted:
        pod, cport, prometheus = admitted[0]
        policies = d.isolating_policies(cluster.policies, pod.namespace, pod.labels)
        why = (
            f"{', '.join(ref(p) for p in policies)} admit{'s' if len(policies) == 1 else ''}"
            if policies
            else "no NetworkPolicy selects the pods, so it admits"
        )
        report.add(
            "network-policy",
            Verdict(
                True,
                f"{why} {ref(prometheus)} pods (namespace "
                f"{prometheus['metadata'].get('namespace')}) on port {show_port(cport)}",
            ),
        )
        return
    pod, cport, prometheus = blocked[0]
    src_ns = prometheus["metadata"].get("namespace", "default")
    labels = cluster.prometheus_pod_labels(prometheus)
    policies = d.isolating_policies(cluster.policies, pod.namespace, pod.labels)
    report.add(
        "network-policy",
        Verdict(
            False,
            f"{', '.join(ref(p) for p in policies)} select{'s' if len(policies) == 1 else ''} {pod.source} and "
            f"admit{'s' if len(policies) == 1 else ''} no pod of {ref(prometheus)} "
            f"(namespace {src_ns}, labels app.kubernetes.io/name={labels.get('app.kubernetes.io/name')},"
            f"operator.prometheus.io/name={labels.get('operator.prometheus.io/name')}) on port {show_port(cport)}",
            f"add an ingress rule to {ref(policies[0])} from namespaceSelector "
            f"{d.NAMESPACE_NAME_LABEL}={src_ns} with podSelector app.kubernetes.io/name=prometheus,"
            f"operator.prometheus.io/name={prometheus['metadata']['name']} on port "
            f"{cport.get('name') or cport.get('containerPort')}",
        ),
    )
