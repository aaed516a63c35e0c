"""helmfile.yaml and its values for kube-prometheus-stack: pinned, laptop-sized, and free of typos and secrets."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from declarations import chart
from tests.manifests.deploy_spec import CHART, CHART_REPOSITORY, HELMFILE, MONITORING_NAMESPACE, Obj
from tests.manifests.kube_logic import unknown_keys

# Subtrees whose keys are user data, not chart settings, so the defaults cannot list them. Globs over the
# dotted path; keep this list short, every entry hides typos below it.
FREE_FORM = (
    "alertmanager.config",  # Alertmanager's own configuration file (checked by test_alertmanager_config.py)
    "*.resources",  # Kubernetes ResourceRequirements
    "*Selector",  # Kubernetes label selectors (serviceMonitorSelector, nodeSelector...)
    "*.tolerations",
    "*.affinity",
    "*.podMetadata",
    "*.storageSpec",  # a PersistentVolumeClaim template
)
# Keys that would hold a credential. None may be set in a committed file.
SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|apiKey|credentials|auth_?key)$", re.IGNORECASE)
# Control-plane scrapers that minikube and kind do not expose to pods.
UNREACHABLE_ON_MINIKUBE = ("kubeEtcd", "kubeControllerManager", "kubeScheduler", "kubeProxy")


def _problems(values: dict[str, Any], chart_defaults: dict[str, Any], grafana_defaults: dict[str, Any]) -> list[str]:
    """unknown_keys, with `grafana:` checked against both the parent chart's keys and the subchart's."""
    problems = unknown_keys({k: v for k, v in values.items() if k != "grafana"}, [chart_defaults], FREE_FORM)
    if "grafana" in values:
        problems += unknown_keys(
            values["grafana"], [chart_defaults.get("grafana") or {}, grafana_defaults], FREE_FORM, ("grafana",)
        )
    return problems


def test_helmfile_declares_one_pinned_kube_prometheus_stack_release(
    helmfile: dict[str, Any], release: dict[str, Any], shared_dir: Path
) -> None:
    chart = yaml.safe_load((shared_dir / "charts" / CHART / "Chart.yaml").read_text())
    repositories = {r["name"]: r["url"] for r in helmfile["repositories"]}
    repo, _, name = release["chart"].partition("/")
    assert repositories.get(repo) == CHART_REPOSITORY and name == CHART
    # The reference defaults the other tests read are those of this exact version.
    assert str(release["version"]) == chart["version"] == "88.5.3"
    assert release["name"] == CHART
    assert release["namespace"] == MONITORING_NAMESPACE
    assert release["createNamespace"] is True
    assert release["wait"] is True


def test_every_value_is_a_key_the_chart_knows(values, chart_defaults, grafana_defaults) -> None:
    assert not _problems(values, chart_defaults, grafana_defaults)


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        (("prometheus", "prometheusSpec"), "retension"),
        (("prometheus",), "prometheusSpecs"),
        (("grafana", "sidecar"), "dashboard"),  # the real key is `dashboards`
        (("grafana", "sidecar", "dashboards"), "searchNamespaces"),
        ((), "kubeEtdc"),
    ],
)
def test_a_misspelt_key_is_caught(values, chart_defaults, grafana_defaults, path: tuple[str, ...], typo: str) -> None:
    broken = copy.deepcopy(values)
    node = broken
    for key in path:
        node = node.setdefault(key, {})
    node[typo] = {"enabled": False}
    problems = _problems(broken, chart_defaults, grafana_defaults)
    assert [p for p in problems if p.startswith(".".join((*path, typo)) + ":")], problems


def test_a_map_where_the_chart_has_a_scalar_is_caught(values, chart_defaults, grafana_defaults) -> None:
    broken = copy.deepcopy(values)
    broken["prometheus"]["prometheusSpec"]["retention"] = {"time": "2d"}
    problems = _problems(broken, chart_defaults, grafana_defaults)
    assert [p for p in problems if p.startswith("prometheus.prometheusSpec.retention:")], problems


def test_free_form_subtrees_are_not_descended(values, chart_defaults, grafana_defaults) -> None:
    extended = copy.deepcopy(values)
    extended["alertmanager"]["config"]["route"]["anything"] = 1
    extended["prometheus"]["prometheusSpec"]["resources"]["requests"]["ephemeral-storage"] = "1Gi"
    assert _problems(extended, chart_defaults, grafana_defaults) == []


def _secret_like(node: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if SECRET_KEY.search(str(key)) and value not in (None, "", {}, []):
                found.append(here)
            found += _secret_like(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _secret_like(item, f"{path}[{i}]")
    return found


def test_no_credential_is_committed(values: dict[str, Any]) -> None:
    assert not _secret_like(values), _secret_like(values)
    grafana = values.get("grafana") or {}
    # The chart generates the admin password into Secret <release>-grafana when none is given.
    assert "adminPassword" not in grafana
    assert not (grafana.get("admin") or {}).get("existingSecret")


def test_the_credential_scan_finds_a_password() -> None:
    assert _secret_like({"grafana": {"adminPassword": "hunter2"}}) == ["grafana.adminPassword"]
    assert _secret_like({"a": [{"webhook_configs": [{"http_config": {"bearer_token": "x"}}]}]})


# What the chart names the Service and ServiceMonitor of each component (`<fullname>-<suffix>`).
COMPONENT_OBJECT = {
    "kubeEtcd": "kube-etcd",
    "kubeControllerManager": "kube-controller-manager",
    "kubeScheduler": "kube-scheduler",
    "kubeProxy": "kube-proxy",
}


def _unreachable_monitors(objects: list[Obj]) -> list[str]:
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor"}
    return sorted(n for n in names if any(n.endswith(f"-{COMPONENT_OBJECT[c]}") for c in UNREACHABLE_ON_MINIKUBE))


def test_components_minikube_cannot_serve_are_off(chart_objects: list[Obj]) -> None:
    assert not _unreachable_monitors(chart_objects)
    # What the chart does scrape on such a cluster is still there.
    assert any(o["metadata"]["name"].endswith("-kubelet") for o in chart_objects if o["kind"] == "ServiceMonitor")


def test_the_chart_would_scrape_them_by_default(shared_dir: Path, tmp_path: Path) -> None:
    """The check above can fail: with the components left at the chart's defaults, Helm renders their monitors."""
    helmfile = tmp_path / "helmfile.yaml"
    spec = yaml.safe_load(HELMFILE.read_text())
    (declared,) = [r for r in spec["releases"] if r["name"] == CHART]
    declared["values"] = [str(HELMFILE.parent / v) for v in declared["values"]]
    declared["values"].append({c: {"enabled": True} for c in UNREACHABLE_ON_MINIKUBE})
    helmfile.write_text(yaml.safe_dump(spec))
    objects = chart.rendered(shared_dir, helmfile)
    assert objects is not None
    assert len(_unreachable_monitors(objects)) == len(UNREACHABLE_ON_MINIKUBE)


def _container_resources(objects: list[Obj], deployment_suffix: str) -> dict[str, Any] | None:
    for deploy in objects:
        if deploy["kind"] == "Deployment" and deploy["metadata"]["name"].endswith(deployment_suffix):
            return deploy["spec"]["template"]["spec"]["containers"][0].get("resources") or {}
    return None


def test_sized_for_a_laptop(chart_objects: list[Obj], values: dict[str, Any]) -> None:
    prometheus = chart.prometheus(chart_objects)["spec"]
    assert prometheus["retention"] != "10d", "the chart's 10 d retention is not laptop-sized"
    assert prometheus["retentionSize"], "retentionSize keeps the TSDB emptyDir from filling the node's disk"
    alertmanager = next(o for o in chart_objects if o["kind"] == "Alertmanager")["spec"]
    grafana = _container_resources(chart_objects, "-grafana")
    components = {
        "prometheus": prometheus.get("resources"),
        "alertmanager": alertmanager.get("resources"),
        "prometheusOperator": _container_resources(chart_objects, "-operator"),
        # The grafana subchart renders its Deployment only when it is under the chart's charts/.
        "grafana": grafana if grafana is not None else values["grafana"].get("resources"),
    }
    for name, resources in components.items():
        resources = resources or {}
        assert (resources.get("requests") or {}).get("memory"), f"{name}: no memory request"
        assert (resources.get("limits") or {}).get("memory"), f"{name}: no memory limit"
