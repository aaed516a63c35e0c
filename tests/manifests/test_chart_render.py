"""kube-prometheus-stack rendered by Helm (helm-python-sdk) with the values exactly as helmfile.yaml passes them:
the objects the cluster would get, checked against what this project assumes of them.

The selection of manifests/ and canary/ by the rendered Prometheus object and the Grafana sidecar's view of
the dashboard ConfigMap are in test_manifests_wiring.py; the routing of every alert label set through the
rendered Alertmanager configuration is in tests/rules/test_routing.py; the pinned version against the chart's
Chart.yaml in test_helm_values.py (and declarations.chart refuses to render another version).
"""

from __future__ import annotations

import json
import re
from typing import Any

from declarations import chart
from declarations.helm import chart_values
from detection import simulate
from tests.manifests.deploy_spec import APP_RECEIVER, MANIFESTS, ROOT, Obj, one

DETECTION_DOC = ROOT / "docs" / "detection.md"


def test_the_render_is_the_release_helmfile_declares(chart_objects: list[Obj], release: dict[str, Any]) -> None:
    prometheus = chart.prometheus(chart_objects)
    assert prometheus["metadata"]["namespace"] == release["namespace"]
    assert prometheus["metadata"]["labels"]["release"] == release["name"]
    assert len([o for o in chart_objects if o["kind"] == "Alertmanager"]) == 1


def test_the_intervals_are_those_the_detection_budgets_were_measured_at(
    chart_prometheus: Obj, base_objects: list[Obj]
) -> None:
    """docs/detection.md (python -m detection.simulate) measured every budget at one scrape and one evaluation
    interval; the rendered Prometheus object, with the ServiceMonitor's own interval, must give those."""
    measured = re.search(r"scrape interval (\w+), evaluation interval (\w+)", DETECTION_DOC.read_text())
    assert measured, f"{DETECTION_DOC.name} does not say which intervals it measured at"
    default_scrape, evaluation = chart.intervals(chart_prometheus)
    endpoint = one(base_objects, "ServiceMonitor")["spec"]["endpoints"][0]
    scrape = endpoint.get("interval") or default_scrape
    print(
        f"\nrendered Prometheus: scrapeInterval {default_scrape}, evaluationInterval {evaluation}; app every {scrape}"
    )
    assert (scrape, evaluation) == measured.groups()
    # And the simulation that measured them reads the same object.
    cluster = simulate.cluster(base_objects)
    assert (cluster.scrape_interval, cluster.evaluation_interval) == (scrape, evaluation)


def test_the_alertmanager_secret_holds_the_helmfile_configuration(chart_objects: list[Obj]) -> None:
    rendered = chart.alertmanager_config(chart_objects)
    # The chart writes `alertmanager.config` through as it is: the values fallback is the same configuration.
    assert rendered == chart.alertmanager_config_from_values() == chart_values()["alertmanager"]["config"]
    assert APP_RECEIVER in {r["name"] for r in rendered["receivers"]}


def test_the_grafana_sidecar_and_datasource_are_what_the_dashboard_needs(chart_objects: list[Obj]) -> None:
    sidecar = chart.grafana_sidecar(chart_objects)
    print(f"\ngrafana sidecar: {sidecar}")
    assert sidecar["source"]["datasource"] == "render"
    # What the render gives (the datasource uid; the sidecar's settings when the grafana subchart is there) is
    # what the values fallback derives.
    derived = chart.grafana_sidecar_from_values()
    assert {k: v for k, v in sidecar.items() if k != "source"} == {k: v for k, v in derived.items() if k != "source"}
    for path in sorted((MANIFESTS / "dashboards").glob("*.json")):
        variable = next(v for v in json.loads(path.read_text())["templating"]["list"] if v["name"] == "datasource")
        current = (variable.get("current") or {}).get("value")
        # An unset default picks Grafana's default datasource: the chart's, which must then be a Prometheus one.
        assert current in (None, "", sidecar["datasource_uid"]), f"{path.name} expects datasource {current!r}"
        assert variable["query"] == "prometheus"
    default = [d for d in chart.grafana_datasources(chart_objects) or [] if d.get("isDefault")]
    assert [(d["type"], d["uid"]) for d in default] == [("prometheus", sidecar["datasource_uid"])]


def test_the_fallback_matches_the_render(chart_objects: list[Obj]) -> None:
    """Without the chart, offcluster derives the same Prometheus object fields and Alertmanager configuration."""
    rendered = chart.prometheus(chart_objects)
    derived = chart.prometheus_from_values()
    assert {k: rendered["spec"].get(k) for k in derived["spec"]} == derived["spec"]
    assert chart.alertmanager_config(chart_objects) == chart.alertmanager_config_from_values()
