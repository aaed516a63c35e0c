"""A real Prometheus, configured as the operator configures it for the project's ServiceMonitor and rules, and
what the scale benchmark asks it: queries, its own /metrics, its memory, the dashboard's drift query.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from alerts import panels
from declarations.helm import chart_values
from declarations.manifests import one
from declarations.paths import DASHBOARD
from declarations.scrape import scrape_configs
from harness.exposition import by_name
from harness.server import free_port, wait_for
from offcluster.services import find_binary

QUERY_REPEATS = 5

# -- Prometheus ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intervals:
    scrape: str
    evaluation: str


def cluster_intervals(objects: list[dict]) -> Intervals:
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    spec = chart_values()["prometheus"]["prometheusSpec"]
    return Intervals(
        endpoint.get("interval") or spec.get("scrapeInterval") or "30s", spec.get("evaluationInterval") or "30s"
    )


def prometheus_config(objects: list[dict], pods: int, ports: list[int], rules_file: Path, intervals: Intervals) -> dict:
    """The operator's scrape job for a Deployment of `pods` replicas, pod i scraped at ports[i]."""
    objects = json.loads(json.dumps(objects))
    deployment = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == _app_deployment(objects)
    )
    deployment["spec"]["replicas"] = pods
    jobs = scrape_configs(objects, local_port=lambda target: ports[target.replica])
    spec = chart_values()["prometheus"]["prometheusSpec"]
    return {
        "global": {"scrape_interval": spec.get("scrapeInterval") or "30s", "evaluation_interval": intervals.evaluation},
        "rule_files": [str(rules_file)],
        "scrape_configs": jobs,
    }


def _app_deployment(objects: list[dict]) -> str:
    from declarations.targets import targets

    return targets(objects)[0].deployment["metadata"]["name"]


@contextmanager
def prometheus(workdir: Path, config: dict, rules: dict) -> Iterator[tuple[str, int]]:
    rules_file = workdir / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            find_binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready", timeout=60, process=process)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def query(url: str, expr: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=60).json()
    if answer["status"] != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def own_metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus's own /metrics, by sample name."""
    return by_name(requests.get(f"{url}/metrics", timeout=10).text)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def drift_panel_expr(variables: dict[str, str]) -> str:
    """The expression of the dashboard's drift panel (`alerts.panels.PSI_NOW`), its template variables filled."""
    dashboard = json.loads(DASHBOARD.read_text())

    def nested(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from nested(panel.get("panels", []))

    found = [p for p in nested(dashboard["panels"]) if p.get("title") == panels.PSI_NOW]
    if len(found) != 1:
        raise RuntimeError(f"expected one panel {panels.PSI_NOW!r} in {DASHBOARD}, found {len(found)}")
    expr = found[0]["targets"][0]["expr"]
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value)
    return expr


def query_seconds(url: str, expr: str) -> float:
    """Median wall time of an instant query, as the panel issues it."""
    times = []
    for _ in range(QUERY_REPEATS):
        started = time.perf_counter()
        query(url, expr)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
