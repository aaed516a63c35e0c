"""The local scrape job against prometheus-operator v0.93's `generateServiceMonitorConfig`
(pkg/prometheus/promcfg.go): each ServiceMonitor field either gives the labels the operator's relabelling
gives, checked through Prometheus's own relabelling (`promtool check service-discovery`), or is refused.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from declarations.manifests import ROOT, RenderError, one, render
from declarations.scrape import DISCOVERY_WAIT, discovered_labels, scrape_configs
from declarations.targets import LOCAL_IP, node_name, targets
from offcluster.config import Ports, build


@pytest.fixture(scope="module")
def objects():
    return render()


def _changed(objects, monitor_spec=None, endpoint=None, pod_labels=None):
    changed = copy.deepcopy(objects)
    monitor = one(changed, "ServiceMonitor")
    monitor["spec"].update(monitor_spec or {})
    monitor["spec"]["endpoints"][0].update(endpoint or {})
    one(changed, "Deployment")["spec"]["template"]["metadata"]["labels"].update(pod_labels or {})
    return changed


def final_labels(promtool: str, objects, tmp_path: Path, **options) -> dict[str, str]:
    """The labels Prometheus gives the job's first target (its first pod) after relabelling (what
    `/api/v1/targets` shows); every pod is a target."""
    found = discovered_labels(objects, tmp_path, promtool, **options)
    first_job = scrape_configs(objects, **options)[0]["job_name"]
    assert len(found) == len([t for t in targets(objects) if t.job_name == first_job]), found
    return found[0]


def test_todays_servicemonitor_gets_the_operators_labels(promtool, objects, tmp_path):
    labels = final_labels(promtool, objects, tmp_path)
    assert set(labels) == {"job", "namespace", "service", "pod", "container", "endpoint", "instance", "track"}
    assert (labels["job"], labels["namespace"], labels["endpoint"]) == ("wine-classifier", "ml-serving", "metrics")
    assert labels["container"] == "model-server"
    # podTargetLabels: the pod's rollout track on every series.
    assert labels["track"] == "stable"


def test_target_labels_and_pod_target_labels_are_copied(promtool, objects, tmp_path):
    # The operator copies each named Service label (targetLabels) and pod label (podTargetLabels), with the
    # key sanitised into a label name, onto every series of the target.
    # The Prometheus object's own podTargetLabels (prometheusSpec) are appended to every ServiceMonitor's.
    changed = _changed(
        objects,
        monitor_spec={"targetLabels": ["app.kubernetes.io/component"], "podTargetLabels": ["team", "absent"]},
        pod_labels={"team": "ml", "example.com/tier": "gold"},
    )
    labels = final_labels(promtool, changed, tmp_path, pod_target_labels=["example.com/tier"])
    assert labels["app_kubernetes_io_component"] == "model-server"
    assert labels["team"] == "ml" and labels["example_com_tier"] == "gold"
    assert "absent" not in labels  # regex (.+): a label the pod lacks adds nothing


def test_the_prometheus_objects_pod_target_labels_and_timeout_come_from_the_helm_values(promtool, objects, tmp_path):
    helmfile = tmp_path / "helmfile.yaml"
    extra = {"prometheus": {"prometheusSpec": {"podTargetLabels": ["team"], "scrapeTimeout": "20s"}}}
    release = {"name": "kps", "chart": "prometheus-community/kube-prometheus-stack"}
    release["values"] = [str(ROOT / "values" / "kube-prometheus-stack.yaml"), extra]
    helmfile.write_text(yaml.safe_dump({"releases": [release]}))
    built = build(objects, Ports(), tmp_path / "rules.yaml", helmfile=helmfile)
    assert built.prometheus["global"]["scrape_timeout"] == "20s"
    team = {
        "source_labels": ["__meta_kubernetes_pod_label_team"],
        "target_label": "team",
        "regex": "(.+)",
        "replacement": "${1}",
    }
    assert team in built.prometheus["scrape_configs"][0]["relabel_configs"]
    # A compressed interval caps the global timeout, which Prometheus would otherwise refuse.
    fast = build(objects, Ports(), tmp_path / "rules.yaml", scrape_interval="1s", helmfile=helmfile)
    assert fast.prometheus["global"]["scrape_timeout"] == "1s"


def test_relabelings_read_the_pod_meta_labels_a_cluster_gives(promtool, objects, tmp_path):
    read = {
        "app": "__meta_kubernetes_pod_label_app_kubernetes_io_name",
        "node": "__meta_kubernetes_pod_node_name",
        "ip": "__meta_kubernetes_pod_ip",
        "phase": "__meta_kubernetes_pod_phase",
        "port_name": "__meta_kubernetes_pod_container_port_name",
    }
    changed = _changed(
        objects, endpoint={"relabelings": [{"sourceLabels": [src], "targetLabel": dst} for dst, src in read.items()]}
    )
    labels = final_labels(promtool, changed, tmp_path)
    assert labels["app"] == "wine-classifier"
    assert (labels["node"], labels["ip"], labels["phase"], labels["port_name"]) == (
        node_name(),
        LOCAL_IP,
        "Running",
        "metrics",
    )


@pytest.mark.parametrize("target_port", ["metrics", 9100])
def test_target_port_by_name_or_number(promtool, objects, tmp_path, target_port):
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    changed = _changed(objects)
    moved = one(changed, "ServiceMonitor")["spec"]["endpoints"][0]
    moved.pop("port")
    moved["targetPort"] = target_port
    job = scrape_configs(changed)[0]
    # The operator keeps the target by its container port (name or number) and names the endpoint after it.
    by = "name" if isinstance(target_port, str) else "number"
    keep = {
        "action": "keep",
        "source_labels": [f"__meta_kubernetes_pod_container_port_{by}"],
        "regex": str(target_port),
    }
    assert keep in job["relabel_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    labels = final_labels(promtool, changed, tmp_path)
    assert labels["endpoint"] == str(target_port)
    assert labels["job"] == "wine-classifier" and endpoint["port"] == "metrics"


def test_short_interval_without_timeout_leaves_the_timeout_to_prometheus(promtool, objects, tmp_path):
    changed = _changed(objects, endpoint={"interval": "5s"})
    one(changed, "ServiceMonitor")["spec"]["endpoints"][0].pop("scrapeTimeout")
    job = scrape_configs(changed)[0]
    assert job["scrape_interval"] == "5s" and "scrape_timeout" not in job
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [job]}))
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = subprocess.run(
        [promtool, "check", "service-discovery", f"--timeout={DISCOVERY_WAIT}", str(config), job["job_name"]],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # Prometheus caps its 10s default timeout at the interval.
    assert json.loads(result.stdout)[0]["labels"]["__scrape_timeout__"] == "5s"


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("spec", "sampleLimit"),
        ("spec", "attachMetadata"),
        ("spec", "scrapeClass"),
        ("endpoint", "tlsConfig"),
        ("endpoint", "bearerTokenSecret"),
        ("endpoint", "authorization"),
        ("relabeling", "typo"),
    ],
)
def test_a_field_not_reproduced_is_refused_by_name(objects, where, field):
    changed = copy.deepcopy(objects)
    spec = one(changed, "ServiceMonitor")["spec"]
    path = {"spec": f"spec.{field}", "endpoint": f"spec.endpoints[0].{field}"}.get(
        where, f"spec.endpoints[0].relabelings[0].{field}"
    )
    if where == "spec":
        spec[field] = {"x": 1}
    elif where == "endpoint":
        spec["endpoints"][0][field] = {"x": 1}
    else:
        spec["endpoints"][0]["relabelings"] = [{"targetLabel": "a", "replacement": "b", field: 1}]
    with pytest.raises(RenderError) as refused:
        scrape_configs(changed)
    message = str(refused.value)
    assert path in message and "\n" not in message
