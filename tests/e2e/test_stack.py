"""The whole local pipeline, for real: the app under gunicorn, Prometheus configured from the ServiceMonitor
and PrometheusRule, Alertmanager routed by the helmfile's values, locust traffic.

The tests of this module run in order against one stack, which runs as many pods as the Deployment's
`replicas` (separate gunicorn masters sharing the Service's port): discovery of every pod, what the fleet's
rules make of traffic spread over the pods, locust traffic, dashboard queries, drift, discovery lost (no target
at all), one pod killed (no page while the other serves), every pod stopped (a page), then `down`. Time is
compressed (1 s scrapes and rule evaluations, `for:` and `group_wait` shortened); names, labels, annotations and
routes are the declared ones.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import yaml
from sklearn.datasets import load_wine

from alerts import drift
from alerts.drift import PSI
from app.model import load
from declarations.manifests import LOADTEST, one, render, rule_groups
from declarations.scrape import operator_relabelings
from declarations.targets import targets
from harness.exposition import samples
from harness.load import ROW
from harness.locust import start_distributed
from harness.server import ROOT, free_port, free_port_run
from harness.stack import USERS, compress_for, compress_routing, eventually, query, run_locust, scalar
from offcluster.config import Ports, local_links
from offcluster.grafana import INSTALL_HINT, PROMETHEUS_DATASOURCE, dashboards
from offcluster.process_group import group_alive
from offcluster.stack import Stack
from tests.manifests.deploy_spec import APP_RECEIVER

SHIFTED = ("proline", "alcohol")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = Ports(
        app=free_port(), metrics=free_port_run(4), prometheus=free_port(), alertmanager=free_port(),
        webhook=free_port(), grafana=free_port(), locust=free_port(),
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


def test_prometheus_discovers_every_replica_with_the_operators_labels(stack):
    objects = render()
    service, deployment = one(objects, "Service"), one(objects, "Deployment")
    monitor = one(objects, "ServiceMonitor")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 2 and len(stack.pods) == replicas

    def targets_up():
        result = query(stack, f'up{{job="{service["metadata"]["name"]}"}}')
        assert len(result) == replicas and all(r["value"][1] == "1" for r in result), result
        return [r["metric"] for r in result]

    found = {labels["pod"]: labels for labels in eventually(targets_up)}
    assert set(found) == {pod.name for pod in stack.pods}
    for pod in stack.pods:
        assert found[pod.name] == {
            "__name__": "up",
            "job": service["metadata"]["name"],
            "namespace": service["metadata"]["namespace"],
            "service": service["metadata"]["name"],
            "pod": pod.name,
            "container": container["name"],
            "endpoint": monitor["spec"]["endpoints"][0]["port"],
            "instance": stack.urls[f"metrics {pod.name}"].removeprefix("http://").removesuffix("/metrics"),
            "track": deployment["spec"]["template"]["metadata"]["labels"]["track"],
        }
        assert pod.name.startswith(deployment["metadata"]["name"] + "-")
    targets = requests.get(f"{stack.urls['prometheus']}/api/v1/targets", timeout=10).json()["data"]
    pools = {t["scrapePool"] for t in targets["activeTargets"]}
    # The app's ServiceMonitor and the load test's (its master is scraped on the locust port while a run goes).
    name, locust = monitor["metadata"], one(render(LOADTEST), "ServiceMonitor")["metadata"]
    assert pools == {f"serviceMonitor/{m['namespace']}/{m['name']}/0" for m in (name, locust)}


def pod_counts(stack: Stack, name: str) -> dict[str, dict[tuple, float]]:
    """pod -> {labels: value} of the counter `name` read from each pod's own /metrics (no Prometheus)."""
    out = {}
    for pod in stack.pods:
        text = requests.get(stack.urls[f"metrics {pod.name}"], timeout=10).text
        out[pod.name] = {labels: v for (sample, labels), v in samples(text).items() if sample == name}
    return out


def psi(counts: np.ndarray, reference: list[float]) -> float:
    """The rule's PSI for one feature, with its 1e-4 floor on both shares."""
    actual = np.maximum(counts / counts.sum(), 1e-4)
    expected = np.maximum(np.asarray(reference), 1e-4)
    return float(((actual - expected) * np.log(actual / expected)).sum())


def test_psi_and_accuracy_over_the_pods_are_what_one_pod_given_all_traffic_would_show(stack):
    """Known rows through the Service's port, each request on a new connection: the kernel spreads them over
    the pods. The reference is what one process given every row and every feedback item counts: the model's
    own binning of the same rows, and the share of feedback items whose prediction was right."""
    model = load(stack.model_dir)
    wine = load_wine()
    rng = np.random.default_rng(7)
    proline = model.feature_names.index("proline")
    sent, feedback = [], []
    for _ in range(60):
        picked = rng.integers(0, len(wine.data), 8)
        rows = wine.data[picked] + rng.normal(0.0, 0.05, (8, wine.data.shape[1])) * wine.data.std(axis=0)
        # Half of every request drifted on one feature: whichever pod takes a request sees the same mix.
        rows[::2, proline] += 3 * wine.data[:, proline].std()
        rows = np.round(rows, 4)
        answer = requests.post(f"{stack.urls['app']}/predict", json={"instances": rows.tolist()}, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        sent.append(rows)
        # Feedback for the undrifted rows; one item in twenty reports the wrong class: accuracy below 1, and
        # above the accuracy alert's line (which a later test crosses on purpose).
        for row, (predicted, truth) in enumerate(zip(body["predictions"], wine.target[picked], strict=True)):
            if row % 2 == 0:
                continue
            actual = model.class_names[(truth + (1 if len(feedback) % 20 == 0 else 0)) % len(model.class_names)]
            item = {"receipt": body["receipt"], "row": row, "actual": actual}
            feedback.append({**item, "predicted": predicted})
    for start in range(0, len(feedback), 16):
        answer = requests.post(f"{stack.urls['app']}/feedback", json={"feedback": feedback[start : start + 16]})
        assert answer.status_code == 200, answer.text

    rows = np.vstack(sent)
    bins = model.predict(rows).bin_indices
    reference_counts = {
        (feature, str(b)): float((bins[:, j] == b).sum())
        for j, feature in enumerate(model.feature_names)
        for b in range(len(model.metadata["reference"]["features"][j]["bin_ratios"]))
    }

    def summed_exactly():
        # Together the pods counted each row exactly once (input counts reach /metrics within a second).
        result = query(stack, "sum by (feature, bin) (model_input_feature_bin_total)")
        counted = {(r["metric"]["feature"], r["metric"]["bin"]): float(r["value"][1]) for r in result}
        assert counted == reference_counts

    eventually(summed_exactly, timeout=15)
    # And every pod took a real share of them.
    per_pod = pod_counts(stack, "model_input_feature_bin_total")
    shares = {pod: round(sum(values.values()) / rows.size, 3) for pod, values in per_pod.items()}
    assert all(share > 0.1 for share in shares.values()), shares
    expected_psi = {
        feature: psi(
            np.array([reference_counts[(feature, str(b))] for b in range(len(ref["bin_ratios"]))]), ref["bin_ratios"]
        )
        for feature, ref in zip(model.feature_names, model.metadata["reference"]["features"], strict=True)
    }
    correct = sum(item["predicted"] == item["actual"] for item in feedback) / len(feedback)

    def recorded_match():
        recorded = {r["metric"]["feature"]: float(r["value"][1]) for r in query(stack, PSI)}
        assert set(recorded) == set(expected_psi)
        for feature, value in expected_psi.items():
            # rate() extrapolates each pod's series to the window's end by its own scrape phase: a few %.
            assert recorded[feature] == pytest.approx(value, rel=0.05, abs=0.01), (feature, recorded, expected_psi)
        accuracy = scalar(stack, "namespace_job:model_accuracy:ratio_rate1h")
        assert accuracy == pytest.approx(correct, abs=0.01)
        return recorded, accuracy

    recorded, accuracy = eventually(recorded_match, timeout=15)
    assert expected_psi["proline"] > 0.25 > max(v for f, v in expected_psi.items() if f != "proline")
    print(
        f"\npods={len(stack.pods)} row shares={shares} proline PSI two-pod={recorded['proline']:.4f} "
        f"one-pod={expected_psi['proline']:.4f}; accuracy two-pod={accuracy:.4f} one-pod={correct:.4f}"
    )


def test_the_dashboard_is_served_by_grafana_or_one_line_says_how_to_get_it(stack):
    if stack.grafana is None:
        assert stack.notes == [INSTALL_HINT]
        return
    # Only where Grafana is installed (no distribution packages it): anonymous, read-only, provisioned.
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
    counters = {
        "predict": 'sum(http_requests_total{route="/predict"})',
        "model": 'sum(http_requests_total{route="/model"})',
        "refused": "sum(model_invalid_requests_total)",
    }
    # What earlier tests sent (all scraped by now: the previous test waited for its exact sums).
    before = {name: scalar(stack, f"{expr} or vector(0)") for name, expr in counters.items()}
    sent = run_locust(stack, tmp_path / "steady", 15)
    assert sent["/predict"] > 100 and sent["/predict [invalid]"] > 0 and sent["/model"] > 0

    # When the shape ends, locust stops its users mid-request: a request the server answered may be missing
    # from locust's stats, at most one per user. Nothing may be missing from Prometheus.
    in_flight_at_stop = USERS

    def counts_agree():
        predict, model, refused = (scalar(stack, expr) - before[name] for name, expr in counters.items())
        expected = sent["/predict"] + sent["/predict [invalid]"]
        assert expected <= predict <= expected + in_flight_at_stop
        assert sent["/model"] <= model <= sent["/model"] + in_flight_at_stop
        assert sent["/predict [invalid]"] <= refused <= sent["/predict [invalid]"] + in_flight_at_stop
        assert (predict - expected) + (model - sent["/model"]) <= in_flight_at_stop

    # The last requests show up at the next scrape (1 s): a few intervals of slack, no more.
    eventually(counts_agree, timeout=5)
    # The sums are over pods that each served a real share of it.
    by_pod = {
        r["metric"]["pod"]: float(r["value"][1])
        for r in query(stack, counters["predict"].replace("sum(", "sum by (pod) ("))
    }
    assert len(by_pod) == len(stack.pods) and all(v > 0.1 * sent["/predict"] for v in by_pod.values()), by_pod
    print(f"\nlocust /predict={sent['/predict']} + invalid {sent['/predict [invalid]']}; Prometheus by pod: {by_pod}")


def test_every_dashboard_query_returns_data(stack):
    from dashboard import queries

    missing = []
    for title, expr in queries(namespace="ml-serving", job="wine-classifier", rate_interval="1m"):
        if "ALERTS" in expr:
            continue  # checked once an alert fires, below
        if "locust_" in expr:
            continue  # the load test row: with a locust master running, in the next test
        if not query(stack, expr):
            missing.append(f"{title}: {expr}")
    assert not missing, "panels without data:\n" + "\n".join(missing)


def test_prometheus_scrapes_what_the_locust_master_counted_and_the_load_test_panels_have_data(stack, tmp_path):
    """A locust master and two workers as processes, the master's web UI on the stack's locust port: what
    Prometheus last scraped from the master equals locust's own final counts, and every query of the dashboard's
    "Load test" row returns data during the run."""
    from dashboard import queries
    from dashboard.rows import loadtest as loadtest_row

    row = {fn().build().title for fn in loadtest_row.PANELS}
    run = start_distributed(
        stack.urls["app"], tmp_path / "run", 2, "-u", "6", "-r", "6", "-t", "12s", "--autoquit", "8",
        web_port=stack.ports.locust,
    )  # fmt: skip
    try:

        def every_panel_has_data():
            empty = [
                f"{title}: {expr}"
                for title, expr in queries(namespace="ml-serving", job="wine-classifier", rate_interval="5s")
                if title in row and not query(stack, expr)
            ]
            assert not empty, "panels without data:\n" + "\n".join(empty)

        def run_over():
            assert scalar(stack, 'sum(locust_users{job="locust-master"})') == 0

        eventually(every_panel_has_data, timeout=12)
        eventually(run_over, timeout=20)
    finally:
        code = run.wait(60)
    assert code == 0
    # The master is gone; its last scrape came after the workers' last report (autoquit > report interval + scrape).
    scraped = {
        (r["metric"]["name"], r["metric"]["method"]): float(r["value"][1])
        for r in query(stack, 'last_over_time(locust_requests_total{job="locust-master"}[1m])')
    }
    failed = {
        (r["metric"]["name"], r["metric"]["method"]): float(r["value"][1])
        for r in query(stack, 'last_over_time(locust_failures_total{job="locust-master"}[1m])')
    }
    counted = run.stats()
    assert scraped == {k: v[0] for k, v in counted.items()}
    assert failed == {k: v[1] for k, v in counted.items()}
    assert sum(v[0] for v in counted.values()) > 50
    print(f"\nlocust counted {counted}; Prometheus last scraped {scraped}")


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
        assert scalar(stack, 'sum(up{job="wine-classifier"})') == len(stack.pods)

    eventually(scraped_again, timeout=30)


def test_one_pod_killed_is_one_target_down_and_no_page_while_the_other_serves(stack):
    killed, serving = stack.pods[0], stack.pods[1:]
    rules = declared_alerts()
    # The drift tests above page on their own schedule (input drift is critical, its 10m window still holds the
    # drifted rows): every other page must stay quiet while a pod still serves.
    input_pages = {a.alert for a in drift.CONCERN.alerts()}
    critical = {name for name, rule in rules.items() if rule["labels"]["severity"] == "critical"} - input_pages
    notified_before = len(stack.alerts())
    stack.stop(killed.name, sig=signal.SIGKILL)

    def target_down_for_the_killed_pod():
        firing = query(stack, 'ALERTS{alertname="WineClassifierTargetDown", alertstate="firing"}')
        assert [a["metric"]["pod"] for a in firing] == [killed.name], firing

    eventually(target_down_for_the_killed_pod, timeout=30)
    # The Service's port still answers: the kernel hands new connections to the pods still listening.
    answers = [requests.post(f"{stack.urls['app']}/predict", json={"instances": [ROW]}, timeout=10) for _ in range(20)]
    assert [a.status_code for a in answers] == [200] * 20
    assert scalar(stack, 'sum(up{job="wine-classifier"})') == len(serving)
    time.sleep(3)  # longer than the compressed `for:` of the fleet-down page, were it pending
    paging = {a["metric"]["alertname"] for a in query(stack, 'ALERTS{alertstate="firing", severity="critical"}')}
    assert not paging & critical, paging
    delivered = {
        a["labels"]["alertname"]
        for n in stack.alerts()[notified_before:]
        for a in n["payload"]["alerts"]
        if a["status"] == "firing"
    }
    assert not delivered & critical, delivered


def test_every_pod_stopped_pages_through_alertmanager(stack):
    rules = declared_alerts()
    # The local stack points the default links at its own runbook page and Grafana (offcluster.config.local_links).
    linked = local_links({"groups": [{"rules": list(rules.values())}]}, stack.ports)["groups"][0]["rules"]
    rules = {rule["alert"]: rule for rule in linked}
    for pod in stack.pods:
        stack.stop(pod.name)

    def delivered():
        notifications = [n for n in stack.alerts() if n["payload"]["status"] == "firing"]
        alerts = {
            a["labels"]["alertname"]: (n["receiver"], a)
            for n in notifications
            for a in n["payload"]["alerts"]
            if a["labels"]["alertname"] in ("WineClassifierTargetDown", "WineClassifierDown")
        }
        assert {"WineClassifierTargetDown", "WineClassifierDown"} <= set(alerts), [
            n["payload"]["groupLabels"] for n in notifications
        ]
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

    def every_pod_down():
        firing = query(stack, 'ALERTS{alertstate="firing", alertname="WineClassifierTargetDown"}')
        assert {a["metric"]["pod"] for a in firing} == {pod.name for pod in stack.pods}, firing
        return firing

    firing = eventually(every_pod_down, timeout=30)
    assert {a["metric"]["severity"] for a in firing} == {rules["WineClassifierTargetDown"]["labels"]["severity"]}


def test_alert_panels_show_the_firing_alert(stack):
    from dashboard import queries

    alert_queries = [(t, e) for t, e in queries(namespace="ml-serving", job="wine-classifier", rate_interval="1m")]
    alert_queries = [(t, e) for t, e in alert_queries if "ALERTS" in e]
    assert alert_queries
    for title, expr in alert_queries:
        assert query(stack, expr), f"{title}: {expr}"


def test_down_leaves_no_process_behind(stack):
    pids = stack.running()
    assert set(pids) - {"grafana"} == {"webhook", "alertmanager", "prometheus"}  # the pods were stopped above
    result = subprocess.run(
        [sys.executable, "-m", "offcluster", "down"],
        cwd=ROOT, env={**os.environ, "STATE_DIR": str(stack.state)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name} (pid {pid}) survived `down`"
    assert stack.running() == {}
    assert stack.down() == []
