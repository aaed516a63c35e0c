"""`make demo`: the stack up, locust traffic for a while, then the URLs and what Prometheus saw."""

from __future__ import annotations

import json
import math
import os
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


# locust's workers report to their master this often (locust.runners.WORKER_REPORT_INTERVAL, in seconds).
WORKER_REPORT_SECONDS = 3


def locust_workers(stack: Stack) -> int:
    """locust workers for this machine: its CPUs minus one per gunicorn worker the local pods run (the app's
    share), at least 1. One locust process uses one CPU at most."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus - len(stack.pods) * stack.workers)


def scrape_seconds(stack: Stack) -> float:
    """The longest scrape interval of the local Prometheus's jobs."""
    config = yaml.safe_load(stack.prometheus_file.read_text())
    default = config["global"]["scrape_interval"]
    return max(seconds(job.get("scrape_interval", default)) for job in config["scrape_configs"])


def locust_command(stack: Stack, app_url: str, run_seconds: int, name: str, *extra: str) -> list[str]:
    """locust.conf's run as a master and `locust_workers` workers (locust's --processes), the master's web UI
    and /metrics on the locust port while it runs: --autostart instead of locust.conf's headless, and
    --autoquit once the workers' last report has been scraped."""
    report = stack.state / "locust" / name
    report.parent.mkdir(parents=True, exist_ok=True)
    linger = math.ceil(WORKER_REPORT_SECONDS + scrape_seconds(stack)) + 2
    return [
        str(Path(sys.executable).with_name("locust")), "--config", str(ROOT / "loadtest" / "locust.conf"),
        "--host", app_url, "--run-time", f"{run_seconds}s", "--processes", str(locust_workers(stack)),
        "--headful", "--autostart", "--autoquit", str(linger),
        "--web-host", "127.0.0.1", "--web-port", str(stack.ports.locust),
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
    for series in query(prometheus, "sum by (name) (last_over_time(locust_requests_total[10m]))"):
        lines.append(f"  locust sent {series['metric'].get('name')}: {float(series['value'][1]):.0f} (last run)")
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
        print(
            f"\nlocust ({name}) for {run_seconds}s, {locust_workers(stack)} worker(s), web UI {urls['locust']}, "
            f"reports in {stack.state / 'locust'} ...",
            flush=True,
        )
        command = locust_command(stack, urls["app"], run_seconds, name, *extra)
        result = subprocess.run(command, cwd=ROOT, check=False)
        print(f"locust exited with {result.returncode}")
    # The last requests reach Prometheus with the next scrape.
    time.sleep(scrape_seconds(stack) + 1)
    print("\nWhat Prometheus scraped:")
    print("\n".join(summary(urls["prometheus"])) or "  (nothing yet: wait one scrape interval)")
    print("\nThe stack keeps running: open the URLs above. Ctrl-C stops everything.", flush=True)
    signal.pause()
    return 0
