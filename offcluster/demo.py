"""`make demo`: the stack up, locust traffic for a while, then the URLs and what Prometheus saw."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from declarations.durations import seconds
from declarations.manifests import ROOT
from offcluster.stack import Stack


def query(prometheus: str, promql: str) -> list[dict]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


def locust_command(stack: Stack, app_url: str, run_seconds: int, name: str, *extra: str) -> list[str]:
    report = stack.state / "locust" / name
    report.parent.mkdir(parents=True, exist_ok=True)
    return [
        str(Path(sys.executable).with_name("locust")), "--config", str(ROOT / "loadtest" / "locust.conf"),
        "--host", app_url, "--profile-seconds", str(run_seconds),
        "--csv", str(report), "--html", f"{report}.html", *extra,
    ]  # fmt: skip


def summary(prometheus: str) -> list[str]:
    lines = []
    for series in query(prometheus, "sum by (route, status) (http_requests_total)"):
        labels = series["metric"]
        lines.append(f"  requests {labels.get('route')} {labels.get('status')}: {float(series['value'][1]):.0f}")
    for series in query(prometheus, 'sum by (track, pod) (http_requests_total{route="/predict"})'):
        labels = series["metric"]
        lines.append(f"  /predict by pod: {labels.get('track')} {labels.get('pod')}: {float(series['value'][1]):.0f}")
    for series in query(prometheus, 'ALERTS{alertstate="firing"}'):
        lines.append(f"  firing: {series['metric'].get('alertname')} ({series['metric'].get('severity', '')})")
    return lines


def run_demo(stack: Stack, duration: str, drift: bool) -> int:
    urls = stack.up()
    print("The stack is up:")
    for name, url in urls.items():
        print(f"  {name:>16}: {url}")
    print(f"  {'targets':>16}: {urls['prometheus']}/classic/targets")
    for note in stack.notes:
        print(note)
    total = int(seconds(duration))
    # With drift, the second half of the run shifts two features: the PSI panels show the step.
    phases = [("report", total, ())] if not drift else [
        ("report", total // 2, ()), ("drift", total - total // 2, ("--drift-features", "proline,alcohol")),
    ]  # fmt: skip
    for name, run_seconds, extra in phases:
        print(f"\nlocust ({name}) for {run_seconds}s, reports in {stack.state / 'locust'} ...", flush=True)
        command = locust_command(stack, urls["app"], run_seconds, name, *extra)
        result = subprocess.run(command, cwd=ROOT, check=False)
        print(f"locust exited with {result.returncode}")
    # The last requests reach Prometheus with the next scrape.
    config = yaml.safe_load(stack.prometheus_file.read_text())
    default = config["global"]["scrape_interval"]
    time.sleep(max(seconds(job.get("scrape_interval", default)) for job in config["scrape_configs"]) + 1)
    print("\nWhat Prometheus scraped:")
    print("\n".join(summary(urls["prometheus"])) or "  (nothing yet: wait one scrape interval)")
    print("\nThe stack keeps running: open the URLs above. Ctrl-C stops everything.", flush=True)
    signal.pause()
    return 0
