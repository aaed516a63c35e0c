"""The local stack's translation of manifests into Prometheus/Alertmanager config, and its error messages."""

from __future__ import annotations

import copy
import os
import re
import socket

import pytest

from declarations import chart
from declarations.manifests import RenderError, of_kind, one, render
from declarations.scrape import scrape_configs
from declarations.targets import SAFE_ALPHABET, meta_labels, pod_template_hash, targets
from harness.server import free_port, free_port_run
from offcluster.config import Ports, app_environment, build, local_alertmanager_config
from offcluster.pods import local_pods, local_port
from offcluster.services import find_binary
from offcluster.stack import Stack, StackError


@pytest.fixture(scope="module")
def objects():
    return render()


def test_each_servicemonitor_endpoint_becomes_the_operators_job(objects):
    monitor = one(objects, "ServiceMonitor")
    jobs = scrape_configs(objects)
    meta = monitor["metadata"]
    assert [j["job_name"] for j in jobs] == [f"serviceMonitor/{meta['namespace']}/{meta['name']}/0"]
    job = jobs[0]
    endpoint = monitor["spec"]["endpoints"][0]
    assert job["metrics_path"] == endpoint["path"]
    assert job["scrape_interval"] == endpoint["interval"]
    assert job["scrape_timeout"] == endpoint["scrapeTimeout"]
    # The port NAME resolves through the Service to the container port, never a number in the ServiceMonitor.
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{named[endpoint['port']]}"]
    targeted = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"job", "namespace", "service", "pod", "container", "endpoint"} <= targeted


def test_local_ports_remap_declared_ones(objects):
    ports = Ports(app=18000, metrics=19100)
    env = app_environment(objects, ports)
    assert (env["PORT"], env["METRICS_PORT"]) == ("18000", "19100")
    pods = local_pods(objects, ports.app, ports.metrics)
    job = scrape_configs(objects, local_port=local_port(pods), interval="1s")[0]
    assert [c["targets"] for c in job["static_configs"]] == [["127.0.0.1:19100"], ["127.0.0.1:19101"]]
    assert (job["scrape_interval"], job["scrape_timeout"]) == ("1s", "1s")


def test_each_replica_is_a_pod_named_as_its_replica_set_names_it(objects):
    deployment = one(objects, "Deployment")
    name, count = deployment["metadata"]["name"], deployment["spec"]["replicas"]
    found = targets(objects)
    assert len(found) == count == len({t.pod_name for t in found})
    template_hash = pod_template_hash(deployment)
    for target in found:
        assert re.fullmatch(rf"{name}-{template_hash}-[{SAFE_ALPHABET}]{{5}}", target.pod_name), target.pod_name
        labels = meta_labels(target)
        assert labels["__meta_kubernetes_pod_controller_name"] == f"{name}-{template_hash}"
        assert labels["__meta_kubernetes_pod_label_pod_template_hash"] == template_hash
    # A rollout (a changed template) renames the pods; the same template keeps the names.
    assert [t.pod_name for t in targets(copy.deepcopy(objects))] == [t.pod_name for t in found]
    changed = copy.deepcopy(objects)
    one(changed, "Deployment")["spec"]["template"]["metadata"].setdefault("annotations", {})["x"] = "y"
    assert not {t.pod_name for t in targets(changed)} & {t.pod_name for t in found}


def test_every_pod_shares_the_service_port_and_has_its_own_metrics_port(objects):
    pods = local_pods(objects, app_port=18000, metrics_port=19100)
    assert [(p.app_port, p.metrics_port) for p in pods] == [(18000, 19100), (18000, 19101)]
    declared = local_pods(objects)
    assert [p.metrics_port for p in declared] == [9100, 9101]
    assert {p.env["PORT"] for p in declared} == {"8000"}


def test_job_label_and_relabelings_are_honoured(objects):
    changed = copy.deepcopy(objects)
    monitor = one(changed, "ServiceMonitor")
    monitor["spec"]["jobLabel"] = "app.kubernetes.io/name"
    monitor["spec"]["endpoints"][0]["relabelings"] = [{"targetLabel": "team", "replacement": "ml", "action": "replace"}]
    monitor["spec"]["endpoints"][0]["metricRelabelings"] = [
        {"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}
    ]
    job = scrape_configs(changed)[0]
    assert job["relabel_configs"][-1] == {"target_label": "team", "replacement": "ml", "action": "replace"}
    assert {
        "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
        "target_label": "job",
        "regex": "(.+)",
        "replacement": "${1}",
    } in job["relabel_configs"]
    assert job["metric_relabel_configs"] == [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]


def test_a_servicemonitor_selecting_nothing_says_what_to_fix(objects):
    broken = copy.deepcopy(objects)
    one(broken, "ServiceMonitor")["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "typo"}}
    with pytest.raises(RenderError, match=r"selects no Service: make spec\.selector match"):
        targets(broken)


def test_a_port_name_the_service_lacks_is_reported(objects):
    broken = copy.deepcopy(objects)
    one(broken, "ServiceMonitor")["spec"]["endpoints"][0]["port"] = "metricz"
    with pytest.raises(RenderError, match="has no port named 'metricz'"):
        targets(broken)


def test_a_manifest_that_does_not_render_is_reported(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RenderError, match="kubectl kustomize"):
        render(tmp_path)


def test_alertmanager_keeps_the_routes_and_sends_every_receiver_to_the_local_sink():
    declared = chart.alertmanager_config()
    config = local_alertmanager_config(declared, "http://127.0.0.1:1234")
    assert config["route"] == declared["route"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in declared["receivers"]]
    for receiver in config["receivers"]:
        assert receiver["webhook_configs"] == [
            {"url": f"http://127.0.0.1:1234/{receiver['name']}", "send_resolved": True}
        ]
        assert [k for k in receiver if k.endswith("_configs")] == ["webhook_configs"]


def test_prometheus_config_names_the_rule_file_and_alertmanager(objects, tmp_path):
    built = build(objects, Ports(alertmanager=19093), tmp_path / "rules.yaml")
    assert built.prometheus["rule_files"] == [str(tmp_path / "rules.yaml")]
    assert built.prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    rules = [r for g in built.rules["groups"] for r in g["rules"]]
    assert rules == [r for pr in of_kind(objects, "PrometheusRule") for g in pr["spec"]["groups"] for r in g["rules"]]


def test_missing_binaries_say_how_to_install_them(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("PROMETHEUS_BIN", raising=False)
    with pytest.raises(StackError, match="apt-get install prometheus"):
        find_binary("prometheus")
    with pytest.raises(StackError, match="apt-get install prometheus-alertmanager"):
        find_binary("alertmanager")


def test_a_port_in_use_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        free = [free_port(), free_port_run(2), free_port(), free_port()]
        stack = Stack(
            tmp_path, Ports(app=free[0], metrics=free[1], alertmanager=free[2], webhook=free[3], prometheus=busy)
        )
        with pytest.raises(StackError, match=f"port {busy} .* is in use"):
            stack.up(timeout=5)
    assert stack.running() == {}


def test_the_webhook_sink_serves_the_runbooks_every_alert_links_to(tmp_path):
    import threading

    import requests

    from alerts import links
    from alerts.build import alerts
    from offcluster.webhook import serve

    server = serve("127.0.0.1", free_port(), tmp_path / "alerts.jsonl")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = requests.get(f"http://127.0.0.1:{server.server_address[1]}/runbooks", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for alert in alerts():
        anchor = links.runbook_url(alert.alert).split("#", 1)[1]
        assert f'<h2 id="{anchor}">{alert.alert}</h2>' in page.text


@pytest.mark.skipif("RUNBOOK_URL" in os.environ or "GRAFANA_URL" in os.environ, reason="links overridden")
def test_the_default_links_are_the_local_stacks_default_ports():
    from alerts import links

    assert f"http://127.0.0.1:{Ports().webhook}/runbooks" == links.RUNBOOK_URL
    assert f"http://127.0.0.1:{Ports().grafana}" == links.GRAFANA_URL


def test_the_local_rules_link_to_this_stacks_runbook_page_and_grafana(objects, tmp_path):
    ports = Ports(app=free_port(), metrics=free_port(), webhook=12345, grafana=23456)
    rules = build(objects, ports, tmp_path / "rules.yaml").rules
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for rule in alerts:
        assert rule["annotations"]["runbook_url"].startswith("http://127.0.0.1:12345/runbooks#"), rule["alert"]
        assert rule["annotations"]["dashboard_url"].startswith("http://127.0.0.1:23456/d/"), rule["alert"]


def test_a_second_signal_while_the_demo_stops_does_not_cut_the_stopping_short(monkeypatch):
    import signal

    import offcluster.__main__ as cli

    stopped: list[str] = []

    class FakeStack:
        def down(self) -> list[str]:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while the services stop
            os.kill(os.getpid(), signal.SIGTERM)
            stopped.append("prometheus")
            return stopped

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "stack_from_env", FakeStack)
    monkeypatch.setattr(cli, "run_demo", interrupted)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert cli.main(["demo"]) == 130
    except KeyboardInterrupt:
        pytest.fail("the second signal cut the stopping short")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert stopped == ["prometheus"]
