"""The whole local pipeline, for real: the app under gunicorn, Prometheus configured from the ServiceMonitor
and PrometheusRule, Alertmanager routed by the helmfile's values, locust traffic.

The tests of this module run in order against one stack: discovery, traffic, dashboard queries, drift,
discovery lost (no target at all), a stopped app that pages, then `down`. Time is compressed (1 s scrapes
and rule evaluations, `for:` and `group_wait` shortened); names, labels, annotations and routes are the
declared ones.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from alerts.drift import PSI
from harness.server import ROOT, free_port
from offcluster.config import Ports
from offcluster.grafana import INSTALL_HINT, PROMETHEUS_DATASOURCE, dashboards
from offcluster.manifests import one, render, rule_groups
from offcluster.process_group import group_alive
from offcluster.scrape import operator_relabelings
from offcluster.stack import Stack
from offcluster.targets import targets

LOCUST = str(Path(sys.executable).with_name("locust"))
APP_RECEIVER = "ml-serving-oncall"
SHIFTED = ("proline", "alcohol")
USERS = 8


def compress_for(rules: dict) -> dict:
    rules = copy.deepcopy(rules)
    for group in rules["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    return rules


def compress_routing(config: dict) -> dict:
    config = copy.deepcopy(config)
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        route.update({k: "1s" for k in ("group_wait", "group_interval") if k in route or route is config["route"]})
        routes.extend(route.get("routes", []))
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = Ports(
        app=free_port(), metrics=free_port(), prometheus=free_port(), alertmanager=free_port(), webhook=free_port(),
        grafana=free_port(),
    )  # fmt: skip
    running = Stack(
        tmp_path_factory.mktemp("stack"),
        ports,
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_transform=compress_for,
        alertmanager_transform=compress_routing,
    )
    running.up(timeout=90)
    yield running
    running.down()


def query(stack: Stack, promql: str) -> list[dict]:
    response = requests.get(f"{stack.urls['prometheus']}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def scalar(stack: Stack, promql: str) -> float:
    result = query(stack, promql)
    assert len(result) == 1, f"{promql} -> {result}"
    return float(result[0]["value"][1])


def eventually(check, timeout: float = 30.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def run_locust(stack: Stack, out: Path, seconds: int, *extra: str) -> dict[str, int]:
    """A headless locust run; returns request counts by locust's request name."""
    result = subprocess.run(
        [LOCUST, "--config", str(ROOT / "loadtest" / "locust.conf"), "--host", stack.urls["app"],
         "--profile-seconds", str(seconds), "--peak-users", str(USERS), "--csv", str(out), "--html", f"{out}.html",
         *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(f"{out}_stats.csv") as f:
        return {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(f) if row["Name"] != "Aggregated"}


def test_prometheus_discovers_the_app_with_the_operators_labels(stack):
    objects = render()
    service, deployment = one(objects, "Service"), one(objects, "Deployment")
    monitor = one(objects, "ServiceMonitor")
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    def target_up():
        result = query(stack, "up")
        assert len(result) == 1 and result[0]["value"][1] == "1", result
        return result[0]["metric"]

    labels = eventually(target_up)
    assert labels == {
        "__name__": "up",
        "job": service["metadata"]["name"],
        "namespace": service["metadata"]["namespace"],
        "service": service["metadata"]["name"],
        "pod": labels["pod"],
        "container": container["name"],
        "endpoint": monitor["spec"]["endpoints"][0]["port"],
        "instance": stack.urls["metrics"].removeprefix("http://").removesuffix("/metrics"),
    }
    assert labels["pod"].startswith(deployment["metadata"]["name"] + "-")
    targets = requests.get(f"{stack.urls['prometheus']}/api/v1/targets", timeout=10).json()["data"]
    pools = {t["scrapePool"] for t in targets["activeTargets"]}
    name = monitor["metadata"]
    assert pools == {f"serviceMonitor/{name['namespace']}/{name['name']}/0"}


def test_the_dashboard_is_served_by_grafana_or_one_line_says_how_to_get_it(stack):
    if stack.grafana is None:
        assert stack.notes == [INSTALL_HINT]
        return
    # Only where Grafana is installed (not on this project's build machines): anonymous, read-only, provisioned.
    assert stack.notes == []
    base = stack.urls["grafana"]
    for uid in dashboards():
        assert requests.get(f"{base}/api/dashboards/uid/{uid}", timeout=10).status_code == 200, uid
    settings = requests.get(f"{base}/api/frontend/settings", timeout=10).json()
    assert PROMETHEUS_DATASOURCE["uid"] in {d.get("uid") for d in settings["datasources"].values()}
    body = {
        "queries": [{"refId": "A", "datasource": {"uid": PROMETHEUS_DATASOURCE["uid"]}, "expr": "up", "instant": True}],
        "from": "now-5m",
        "to": "now",
    }
    answer = requests.post(f"{base}/api/ds/query", json=body, timeout=10)
    assert answer.status_code == 200 and answer.json()["results"]["A"]["frames"], answer.text[:500]
    assert requests.post(f"{base}/api/dashboards/db", json={"dashboard": {"title": "x"}}, timeout=10).status_code in (
        401,
        403,
    )


def test_prometheus_counts_what_locust_sent(stack, tmp_path):
    sent = run_locust(stack, tmp_path / "steady", 15)
    assert sent["/predict"] > 100 and sent["/predict [invalid]"] > 0 and sent["/model"] > 0

    # When the shape ends, locust stops its users mid-request: a request the server answered may be missing
    # from locust's stats, at most one per user. Nothing may be missing from Prometheus.
    in_flight_at_stop = USERS

    def counts_agree():
        predict = scalar(stack, 'sum(http_requests_total{route="/predict"})')
        model = scalar(stack, 'sum(http_requests_total{route="/model"})')
        refused = scalar(stack, "sum(model_invalid_requests_total)")
        expected = sent["/predict"] + sent["/predict [invalid]"]
        assert expected <= predict <= expected + in_flight_at_stop
        assert sent["/model"] <= model <= sent["/model"] + in_flight_at_stop
        assert sent["/predict [invalid]"] <= refused <= sent["/predict [invalid]"] + in_flight_at_stop
        assert (predict - expected) + (model - sent["/model"]) <= in_flight_at_stop

    # The last requests show up at the next scrape (1 s): a few intervals of slack, no more.
    eventually(counts_agree, timeout=5)


def test_every_dashboard_query_returns_data(stack):
    from dashboard import queries

    missing = []
    for title, expr in queries(namespace="ml-serving", job="wine-classifier", rate_interval="1m"):
        if "ALERTS" in expr:
            continue  # checked once an alert fires, below
        if not query(stack, expr):
            missing.append(f"{title}: {expr}")
    assert not missing, "panels without data:\n" + "\n".join(missing)


def test_drifted_traffic_lifts_psi_for_the_shifted_features_only(stack, tmp_path):
    run_locust(stack, tmp_path / "drift", 15, "--drift-features", ",".join(SHIFTED))

    def psi_split():
        result = query(stack, PSI)
        psi = {r["metric"]["feature"]: float(r["value"][1]) for r in result}
        assert len(psi) == 13, psi
        for feature in SHIFTED:
            assert psi[feature] > 0.25, psi
        return psi

    psi = eventually(psi_split, timeout=20)
    for feature, value in psi.items():
        if feature not in SHIFTED:
            assert value < 0.1, (feature, value)


def test_wrong_ground_truth_fires_the_accuracy_alert(stack, tmp_path):
    # Every single prediction gets feedback, and class_1's rows are reported as another class.
    run_locust(stack, tmp_path / "concept", 20, "--concept-drift-class", "class_1", "--feedback-share", "1")

    def accuracy_alert():
        firing = query(stack, 'ALERTS{alertname="WineClassifierAccuracyLow", alertstate="firing"}')
        assert firing, query(stack, "namespace_job:model_accuracy:ratio_rate1h")
        return firing[0]["metric"]

    labels = eventually(accuracy_alert, timeout=30)
    assert (labels["namespace"], labels["job"]) == ("ml-serving", "wine-classifier")
    live = scalar(stack, "namespace_job:model_accuracy:ratio_rate1h")
    trained = scalar(stack, "namespace_job:model_training_accuracy:max")
    assert live < trained - 0.1
    # The mislabelling lands in one cell of the confusion matrix: predicted class_1, reported class_2.
    cell = 'namespace_job_predicted_actual:model_feedback:rate1h{predicted_class="class_1", actual_class="class_2"}'
    assert scalar(stack, f"{cell} * 3600") > 100


def declared_alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule for group in rule_groups(render())["groups"] for rule in group["rules"] if "alert" in rule
    }


def reload_prometheus(stack: Stack, config: dict) -> None:
    (stack.state / "prometheus" / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    requests.post(f"{stack.urls['prometheus']}/-/reload", timeout=10).raise_for_status()


def test_no_target_at_all_pages_the_team(stack):
    # The ServiceMonitor's selector matches nothing (a label renamed on one side): the operator's relabelling
    # then keeps none of the discovered endpoints. The app itself keeps running.
    path = stack.state / "prometheus" / "prometheus.yml"
    original = yaml.safe_load(path.read_text())
    broken = copy.deepcopy(original)
    objects = render()
    monitor = one(objects, "ServiceMonitor")
    nothing = {"matchLabels": {key: "matches-nothing" for key in monitor["spec"]["selector"]["matchLabels"]}}
    target = targets(objects)[0]
    unmatched = dataclasses.replace(target, monitor={**monitor, "spec": {**monitor["spec"], "selector": nothing}})
    for job in broken["scrape_configs"]:
        job["relabel_configs"] = operator_relabelings(unmatched)
    reload_prometheus(stack, broken)
    try:

        def delivered():
            assert not query(stack, 'up{job="wine-classifier"}'), "the target is still scraped"
            found = [
                (n["receiver"], a)
                for n in stack.alerts()
                if n["payload"]["status"] == "firing"
                for a in n["payload"]["alerts"]
                if a["labels"]["alertname"] == "WineClassifierDown" and "container" not in a["labels"]
            ]
            assert found, [n["payload"]["groupLabels"] for n in stack.alerts()]
            return found[0]

        receiver, alert = eventually(delivered, timeout=60)
        assert receiver == APP_RECEIVER
        # The absent() branch: only what its selector names, namespace included.
        assert alert["labels"] == {
            "alertname": "WineClassifierDown",
            "job": "wine-classifier",
            "namespace": "ml-serving",
            "severity": declared_alerts()["WineClassifierDown"]["labels"]["severity"],
        }
        assert not query(stack, 'ALERTS{alertname="WineClassifierTargetDown"}'), "no target, so no target is down"
    finally:
        reload_prometheus(stack, original)

    def scraped_again():
        assert scalar(stack, 'up{job="wine-classifier"}') == 1

    eventually(scraped_again, timeout=30)


def test_a_stopped_app_pages_through_alertmanager(stack):
    rules = declared_alerts()
    stack.stop("app")

    def delivered():
        notifications = [n for n in stack.alerts() if n["payload"]["status"] == "firing"]
        alerts = {
            a["labels"]["alertname"]: (n["receiver"], a)
            for n in notifications
            for a in n["payload"]["alerts"]
            if a["labels"]["alertname"] in ("WineClassifierTargetDown", "WineClassifierDown")
        }
        assert "WineClassifierTargetDown" in alerts, [n["payload"]["groupLabels"] for n in notifications]
        return alerts

    alerts = eventually(delivered, timeout=60)
    for name, (receiver, alert) in alerts.items():
        declared = rules[name]
        assert receiver == APP_RECEIVER
        assert alert["labels"]["severity"] == declared["labels"]["severity"]
        assert alert["labels"]["namespace"] == "ml-serving"
        assert set(alert["annotations"]) == set(declared["annotations"])
        assert alert["annotations"]["runbook_url"] == declared["annotations"]["runbook_url"]
        assert all("{{" not in text for text in alert["annotations"].values())
    firing = query(stack, 'ALERTS{alertstate="firing", alertname="WineClassifierTargetDown"}')
    assert firing and firing[0]["metric"]["severity"] == rules["WineClassifierTargetDown"]["labels"]["severity"]


def test_alert_panels_show_the_firing_alert(stack):
    from dashboard import queries

    alert_queries = [(t, e) for t, e in queries(namespace="ml-serving", job="wine-classifier", rate_interval="1m")]
    alert_queries = [(t, e) for t, e in alert_queries if "ALERTS" in e]
    assert alert_queries
    for title, expr in alert_queries:
        assert query(stack, expr), f"{title}: {expr}"


def test_down_leaves_no_process_behind(stack):
    pids = stack.running()
    assert set(pids) - {"grafana"} == {"webhook", "alertmanager", "prometheus"}  # the app was stopped above
    result = subprocess.run(
        [sys.executable, "-m", "offcluster", "down"],
        cwd=ROOT, env={**os.environ, "STATE_DIR": str(stack.state)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (pid {pid}) survived `down`"
    assert stack.running() == {}
    assert stack.down() == []
