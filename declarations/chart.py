"""What kube-prometheus-stack makes of helmfile.yaml's values, rendered by Helm itself.

The chart, pinned in helmfile.yaml, is read from the reference data (`$SHARED_DIR/charts/kube-prometheus-stack`,
default: shared/ next to the project; docs/testing.md, "Reference data", says how to get it) and rendered with
helm-python-sdk (Helm v4 as a library, no cluster, no helm binary) under the release name and namespace
helmfile declares. The objects that decide whether this project's monitoring is wired (the Prometheus
object's selectors and intervals, the Alertmanager configuration Secret, the Grafana sidecar and datasource)
are read from that render.

Where the chart or helm-python-sdk is absent (a clone without the reference data), the same fields are derived
from the helmfile values and the chart's documented behaviour: the fallback. `source()` says which was used.

A subchart missing from `charts/` cannot be rendered: the render disables it (its `condition`) and `source()`
names it; what the parent renders itself (Prometheus, Alertmanager, their Secret, Grafana's datasource) is Helm's.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from declarations.helm import CHART, HELMFILE, chart_values, helm_merge, release
from declarations.manifests import ROOT, Obj, RenderError

# Where the chart sits inside the reference data.
CHART_DIR = Path("charts") / CHART
# The kube-prometheus-stack 88.5.3 defaults the fallback relies on (values.yaml), for keys helmfile may omit.
FALLBACK_DEFAULTS: dict[str, Any] = {
    "prometheus": {
        "prometheusSpec": {
            "serviceMonitorSelectorNilUsesHelmValues": True,
            "podMonitorSelectorNilUsesHelmValues": True,
            "ruleSelectorNilUsesHelmValues": True,
        }
    },
    "grafana": {
        "sidecar": {
            "dashboards": {
                "enabled": True,
                "label": "grafana_dashboard",
                "labelValue": "1",
                "searchNamespace": "ALL",
                "resource": "both",
            },
            "datasources": {"uid": "prometheus"},
        }
    },
}
# The operator's defaults when the Prometheus object leaves an interval unset.
OPERATOR_DEFAULT_INTERVAL = "30s"
# The grafana chart names the k8s-sidecar container that loads dashboards `<grafana.name>-sc-dashboard`.
DASHBOARD_SIDECAR_SUFFIX = "-sc-dashboard"


def default_shared_dir() -> Path:
    return Path(os.environ.get("SHARED_DIR") or ROOT.parent / "shared")


def chart_dir(shared_dir: Path | None = None) -> Path:
    return (shared_dir or default_shared_dir()) / CHART_DIR


def missing_subcharts(directory: Path) -> dict[str, str]:
    """name -> condition of every dependency Chart.yaml declares that is not under `charts/` (dir or archive)."""
    meta = yaml.safe_load((directory / "Chart.yaml").read_text()) or {}
    present = {p.name for p in (directory / "charts").glob("*")} if (directory / "charts").is_dir() else set()
    missing = {}
    for dep in meta.get("dependencies") or []:
        name = dep["name"]
        if name not in present and not any(p.startswith(f"{name}-") and p.endswith(".tgz") for p in present):
            missing[name] = dep.get("condition") or ""
    return missing


def _disable(values: dict[str, Any], condition: str) -> dict[str, Any]:
    """`values` with the dotted boolean `condition` (e.g. nodeExporter.enabled) set to false."""
    override: dict[str, Any] = {}
    node = override
    *parents, leaf = condition.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = False
    return helm_merge(values, override)


# libyaml's parser when PyYAML has it: the chart's dashboard ConfigMaps take the pure-Python one seconds.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(manifests: dict[str, str]) -> list[Obj]:
    objects: list[Obj] = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.load_all(manifests[path], Loader=_LOADER) if doc)
    return objects


def _render(directory: Path, helmfile: Path) -> tuple[list[Obj] | None, str]:
    if not (directory / "Chart.yaml").is_file():
        return None, f"values fallback: no chart at {directory} (docs/testing.md: Reference data)"
    try:
        import helm_python  # noqa: F401
    except ImportError:
        return None, "values fallback: helm-python-sdk is not installed (`make venv` installs it)"
    # Keyed on what helmfile declares, not its path: the same file may be rewritten with other values.
    declared = json.dumps([release(helmfile), chart_values(helmfile)], sort_keys=True)
    return _render_declared(directory, declared, str(helmfile))


@cache
def _render_declared(directory: Path, declared: str, helmfile: str) -> tuple[list[Obj], str]:
    import helm_python

    spec, values = json.loads(declared)
    chart = helm_python.Chart.load(str(directory))
    pinned = str(spec.get("version", ""))
    if pinned and chart.version != pinned:
        name = str(spec.get("chart", CHART)).rpartition("/")[2]
        raise RenderError(f"{helmfile} pins {name} {pinned}, but {directory} holds {chart.version}")
    missing = missing_subcharts(directory)
    disabled: list[str] = []
    while True:
        try:
            manifests = chart.render(values, name=spec["name"], namespace=spec.get("namespace"), is_install=True)
            break
        except helm_python.HelmRenderError as error:
            # A template reading an absent subchart's defaults fails on `<"name">`: that subchart cannot render.
            needed = [n for n in re.findall(r'<"([^"]+)">', str(error)) if n in missing and n not in disabled]
            if not needed or not missing[needed[0]]:
                raise RenderError(f"helm could not render {directory}: {error}") from error
            disabled.append(needed[0])
            values = _disable(values, missing[needed[0]])
    note = ""
    if missing:
        note = f" (subcharts absent: {', '.join(sorted(missing))}"
        note += f"; disabled for the render: {', '.join(disabled)})" if disabled else ")"
    return _parse(manifests), f"helm render of {directory}{note}"


def rendered(shared_dir: Path | None = None, helmfile: Path = HELMFILE) -> list[Obj] | None:
    """Every object kube-prometheus-stack renders with the values exactly as helmfile.yaml passes them (release
    name and namespace from helmfile.yaml); None when the chart is absent. Cached per process."""
    objects, _ = _render(chart_dir(shared_dir).resolve(), helmfile.resolve())
    return copy.deepcopy(objects)


def rendered_release(directory: Path, chart_name: str, helmfile: Path = HELMFILE) -> list[Obj]:
    """What another chart of the helmfile (KEDA's) renders with its release's name, namespace and values."""
    declared = json.dumps([release(helmfile, chart_name), chart_values(helmfile, chart_name)], sort_keys=True)
    return copy.deepcopy(_render_declared(directory.resolve(), declared, str(helmfile.resolve()))[0])


def source(shared_dir: Path | None = None, helmfile: Path = HELMFILE) -> str:
    """Which way the objects below were obtained: "helm render of <chart dir>..." or "values fallback: <why>"."""
    return _render(chart_dir(shared_dir).resolve(), helmfile.resolve())[1]


def _objects(objects: list[Obj] | None, helmfile: Path) -> list[Obj] | None:
    return rendered(helmfile=helmfile) if objects is None else objects


def _fallback_values(helmfile: Path = HELMFILE) -> dict[str, Any]:
    return helm_merge(FALLBACK_DEFAULTS, chart_values(helmfile))


# ---- Prometheus -------------------------------------------------------------------------------------------


def chart_fullname(release_name: str, values: dict[str, Any]) -> str:
    """`kube-prometheus-stack.fullname` from the chart's _helpers.tpl."""
    if values.get("fullnameOverride"):
        return str(values["fullnameOverride"])[:26].rstrip("-")
    name = values.get("nameOverride") or CHART
    full = release_name if name in release_name else f"{release_name}-{name}"
    return full[:26].rstrip("-")


def chart_object_selector(spec: dict[str, Any], kind: str, release_name: str) -> dict[str, Any] | None:
    """The `<kind>Selector` the chart (templates/prometheus/prometheus.yaml) writes into its Prometheus object
    from `prometheus.prometheusSpec`; None when it leaves it out (the operator then selects nothing).

    kind is serviceMonitor, podMonitor or rule. A non-empty selector wins; else `*NilUsesHelmValues` gives
    `release: <release name>`; else `{}` (everything), except that a null ruleSelector is left out.
    """
    selector = spec.get(f"{kind}Selector")
    if selector:
        return selector
    if spec.get(f"{kind}SelectorNilUsesHelmValues"):
        return {"matchLabels": {"release": release_name}}
    if kind == "rule" and selector is None:
        return None
    return {}


def prometheus_from_values(helmfile: Path = HELMFILE) -> Obj:
    """The fallback: the Prometheus object's name, selectors and intervals as the chart derives them."""
    values = _fallback_values(helmfile)
    spec_values = (values.get("prometheus") or {}).get("prometheusSpec") or {}
    rel = release(helmfile)
    full = chart_fullname(rel["name"], values)
    name = full if values.get("cleanPrometheusOperatorObjectNames") else f"{full}-prometheus"
    spec: dict[str, Any] = {}
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        selector = chart_object_selector(spec_values, kind, rel["name"])
        if selector is not None:
            spec[f"{kind}Selector"] = selector
        spec[f"{kind}NamespaceSelector"] = spec_values.get(f"{kind}NamespaceSelector") or {}
    for key in ("scrapeInterval", "scrapeTimeout", "evaluationInterval", "podTargetLabels", "podMetadata"):
        if spec_values.get(key):
            spec[key] = copy.deepcopy(spec_values[key])
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": name, "namespace": rel.get("namespace", "default")},
        "spec": spec,
    }


def prometheus(objects: list[Obj] | None = None, helmfile: Path = HELMFILE) -> Obj:
    """The Prometheus custom resource as the chart makes it: from the render, else derived from the values."""
    objects = _objects(objects, helmfile)
    if objects is None:
        return prometheus_from_values(helmfile)
    found = [o for o in objects if o.get("kind") == "Prometheus"]
    if len(found) != 1:
        raise RenderError(f"the chart rendered {len(found)} Prometheus objects, expected 1")
    return found[0]


def intervals(prom: Obj) -> tuple[str, str]:
    """(scrape interval, evaluation interval) of a Prometheus object, the operator's default where unset."""
    spec = prom.get("spec") or {}
    return (
        spec.get("scrapeInterval") or OPERATOR_DEFAULT_INTERVAL,
        spec.get("evaluationInterval") or OPERATOR_DEFAULT_INTERVAL,
    )


def prometheus_pod_labels(prom: Obj) -> dict[str, str]:
    """Labels prometheus-operator puts on the pods of a Prometheus object (its podMetadata labels, then its own).

    The chart relies on the same ones: its Service for Prometheus selects `app.kubernetes.io/name` +
    `operator.prometheus.io/name`, its pod anti-affinity `app.kubernetes.io/name` + `app.kubernetes.io/instance`.
    """
    name = prom["metadata"]["name"]
    labels = dict(((prom.get("spec") or {}).get("podMetadata") or {}).get("labels") or {})
    labels.update(
        {
            "app.kubernetes.io/name": "prometheus-agent" if prom.get("kind") == "PrometheusAgent" else "prometheus",
            "app.kubernetes.io/instance": name,
            "operator.prometheus.io/name": name,
            "prometheus": name,
        }
    )
    return labels


# ---- Grafana ----------------------------------------------------------------------------------------------


def _sidecar_namespaces(text: str) -> str | list[str]:
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    return "ALL" if "ALL" in names else names


def grafana_datasources(objects: list[Obj] | None = None, helmfile: Path = HELMFILE) -> list[dict[str, Any]] | None:
    """The datasources the chart provisions into Grafana (its ConfigMap labelled `grafana_datasource`, which
    the datasource sidecar loads); None without a render."""
    objects = _objects(objects, helmfile)
    if objects is None:
        return None
    found: list[dict[str, Any]] = []
    for cm in objects:
        if cm.get("kind") != "ConfigMap" or "grafana_datasource" not in (cm["metadata"].get("labels") or {}):
            continue
        for text in (cm.get("data") or {}).values():
            found.extend((yaml.safe_load(text) or {}).get("datasources") or [])
    return found or None


def grafana_dashboard_providers(
    objects: list[Obj] | None = None, helmfile: Path = HELMFILE
) -> list[dict[str, Any]] | None:
    """The dashboard providers the grafana subchart provisions (its ConfigMap holding `provider.yaml`: a file
    provider reading the folder the sidecar fills); None without a render that includes the subchart."""
    objects = _objects(objects, helmfile)
    for cm in objects or []:
        if cm.get("kind") == "ConfigMap" and "provider.yaml" in (cm.get("data") or {}):
            return (yaml.safe_load(cm["data"]["provider.yaml"]) or {}).get("providers") or None
    return None


def _rendered_datasource_uid(objects: list[Obj]) -> str | None:
    for ds in grafana_datasources(objects) or []:
        if ds.get("type") == "prometheus" and ds.get("isDefault"):
            return ds.get("uid")
    return None


def _rendered_sidecar(objects: list[Obj]) -> dict[str, Any] | None:
    for deploy in objects:
        if deploy.get("kind") != "Deployment":
            continue
        for container in deploy["spec"]["template"]["spec"].get("containers") or []:
            if not str(container.get("name", "")).endswith(DASHBOARD_SIDECAR_SUFFIX):
                continue
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            return {
                "label": env.get("LABEL"),
                # LABEL_VALUE unset: k8s-sidecar takes any value of the label.
                "label_value": env.get("LABEL_VALUE"),
                "namespaces": _sidecar_namespaces(env.get("NAMESPACE") or deploy["metadata"]["namespace"]),
                "namespace": deploy["metadata"]["namespace"],
                "resource": env.get("RESOURCE") or "both",
                "enabled": True,
            }
    return None


def grafana_sidecar_from_values(helmfile: Path = HELMFILE) -> dict[str, Any]:
    """The fallback: the dashboard sidecar's settings and the datasource uid from the values."""
    sidecar_values = _fallback_values(helmfile)["grafana"]["sidecar"]
    dashboards = sidecar_values["dashboards"]
    searched = dashboards.get("searchNamespace")
    grafana_ns = release(helmfile)["namespace"]
    if searched is None:
        # The grafana chart's default: only Grafana's own namespace.
        namespaces: str | list[str] = [grafana_ns]
    else:
        namespaces = _sidecar_namespaces(",".join(searched) if isinstance(searched, list) else searched)
    return {
        "label": dashboards.get("label"),
        "label_value": str(dashboards["labelValue"]) if dashboards.get("labelValue") not in (None, "") else None,
        "namespaces": namespaces,
        "namespace": grafana_ns,
        "resource": dashboards.get("resource") or "both",
        "enabled": bool(dashboards.get("enabled")),
        "datasource_uid": (sidecar_values.get("datasources") or {}).get("uid"),
        "source": {"sidecar": "values", "datasource": "values"},
    }


def grafana_sidecar(objects: list[Obj] | None = None, helmfile: Path = HELMFILE) -> dict[str, Any]:
    """The Grafana dashboard sidecar and the Prometheus datasource the chart provisions, from the render, else
    the values: {'label', 'label_value', 'namespaces' ('ALL' or a list), 'namespace' (Grafana's), 'enabled',
    'resource', 'datasource_uid', 'source'}.

    'source' says, per part, where it came from (the Grafana subchart may be absent while its parent renders).
    """
    objects = _objects(objects, helmfile)
    found = grafana_sidecar_from_values(helmfile)
    if objects is None:
        return found
    sidecar = _rendered_sidecar(objects)
    if sidecar:
        found.update(sidecar)
        found["source"]["sidecar"] = "render"
    uid = _rendered_datasource_uid(objects)
    if uid:
        found["datasource_uid"] = uid
        found["source"]["datasource"] = "render"
    return found


# ---- Alertmanager -----------------------------------------------------------------------------------------


def alertmanager_config_from_values(helmfile: Path = HELMFILE) -> dict[str, Any]:
    """The fallback: `alertmanager.config` of the helmfile values, which the chart writes into its Secret."""
    config = (chart_values(helmfile).get("alertmanager") or {}).get("config")
    if not config:
        raise RenderError("helmfile values set no alertmanager.config")
    return copy.deepcopy(config)


def alertmanager_config(objects: list[Obj] | None = None, helmfile: Path = HELMFILE) -> dict[str, Any]:
    """The Alertmanager configuration as the chart renders it into its Secret (alertmanager.yaml), else the
    helmfile values' `alertmanager.config`."""
    objects = _objects(objects, helmfile)
    if objects is None:
        return alertmanager_config_from_values(helmfile)
    for secret in objects:
        if secret.get("kind") != "Secret":
            continue
        data = secret.get("data") or {}
        if "alertmanager.yaml" in data:
            return yaml.safe_load(base64.b64decode(data["alertmanager.yaml"]).decode())
        if "alertmanager.yaml" in (secret.get("stringData") or {}):
            return yaml.safe_load(secret["stringData"]["alertmanager.yaml"])
    raise RenderError("the chart rendered no Secret holding alertmanager.yaml")
