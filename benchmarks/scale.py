"""What monitoring costs as the fleet and the model grow: series, scrape and rule cost, measured.

    python -m benchmarks.scale --pods 50 --features 500 [--real-pods 2] [--evaluations 4]
    python -m benchmarks.scale --pods 1 10 50 --features 13 100 500     # the table of docs/scale.md

For each (pods P, features F): a model of F features (wine for 13, else `python -m app.train --dataset
synthetic --features F`), a real Prometheus (the Debian binary the local stack runs) with the project's rules
(rendered manifests -> rule file, as `offcluster` writes it) at the cluster's intervals (the ServiceMonitor's
scrape interval, the chart's evaluation interval), and P targets labelled as the operator labels P pods of
the Deployment:
- the first `--real-pods` are THE gunicorn command serving the model, under a light stream of /predict and
  /feedback traffic;
- the others are light targets (a threaded HTTP server here, 127.0.0.1 only) serving the exposition recorded
  from the first real pod, every cumulative series (counters, histograms) growing from its recorded value by
  a rate that differs per pod, gauges as recorded: every rule has live data at every pod.
Prometheus starts empty for each size and runs for `--evaluations` rule evaluations, then the benchmark reads
Prometheus's own metrics and prints, per (P, F): head series, series per pod, scrape bytes and
`scrape_duration_seconds` / `scrape_samples_scraped` per target (real pods and light ones apart), each rule
group's `prometheus_rule_group_last_duration_seconds` (max over the last evaluations), Prometheus's RSS, and
the time of the dashboard's drift panel query (read from the generated dashboard JSON). /proc/loadavg is
printed before and after each size: figures taken on a loaded machine are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from app.train import DRIFT_FEATURES, Dataset, synthetic, train, wine, write_artefact
from benchmarks.light_targets import light_targets, parse_exposition
from benchmarks.metrics_port import cpu_seconds
from benchmarks.prometheus_run import (
    Intervals,
    cluster_intervals,
    drift_panel_expr,
    own_metrics,
    prometheus,
    prometheus_config,
    query,
    query_seconds,
    rss_bytes,
)
from declarations.durations import seconds
from declarations.manifests import render, rule_groups
from harness.server import Server, start_server

WINE_FEATURES = 13
TRAFFIC_ROWS = 8  # rows per /predict of the background traffic
TRAFFIC_PAUSE = 0.2  # seconds between two requests to one real pod
FEEDBACK_EVERY = 5  # one /feedback per this many /predict
SCRAPE_REPEATS = 20
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the model and its traffic ------------------------------------------------------------------------------


def dataset(features: int) -> Dataset:
    return wine() if features == WINE_FEATURES else synthetic(features)


def traffic(servers: list[Server], data: Dataset, stop: threading.Event) -> None:
    """A light, steady stream of rows from the training distribution to every real pod, with ground truth."""
    rng = np.random.default_rng(0)
    session = requests.Session()
    sent = 0
    while not stop.is_set():
        for server in servers:
            picked = rng.integers(0, len(data.data), TRAFFIC_ROWS)
            answer = session.post(
                f"{server.app}/predict", json={"instances": data.data[picked].round(4).tolist()}, timeout=10
            ).json()
            sent += 1
            if sent % FEEDBACK_EVERY == 0:
                items = [
                    {"receipt": answer["receipt"], "row": row, "actual": data.class_names[t]}
                    for row, t in enumerate(data.target[picked])
                ]
                session.post(f"{server.app}/feedback", json={"feedback": items}, timeout=10)
        stop.wait(TRAFFIC_PAUSE)


# -- one size -----------------------------------------------------------------------------------------------


@dataclass
class Measured:
    pods: int
    features: int
    monitored: int
    head_series: int
    series_per_pod: int
    scrape_bytes_real: int
    scrape_bytes_light: int
    scrape_seconds_real: tuple[float, float]  # median and max over the real pods' scrapes
    scrape_seconds_light: tuple[float, float]  # the same over the light targets
    get_metrics_seconds: float  # median of GET /metrics of a real pod, timed here
    scrape_cpu_seconds: float  # CPU of the real pod's gunicorn master per GET /metrics (load-independent)
    prometheus_cpu_share: float  # Prometheus's CPU seconds per second over the measured evaluations
    samples_per_scrape: int
    rule_groups: dict[str, float]
    evaluation_seconds: float
    rss_bytes: int
    drift_query_seconds: float
    load_before: str
    load_after: str
    wall_seconds: float


def start_pods(stack: ExitStack, workdir: Path, model_dir: Path, count: int, data: Dataset) -> list[Server]:
    """`count` real pods (THE gunicorn command), with background traffic to each, stopped with `stack`."""
    servers = []
    for i in range(count):
        directory = workdir / f"pod{i}"
        directory.mkdir()
        server = start_server(directory, model_dir, workers=2)
        stack.callback(server.stop, signal.SIGKILL, 5)
        servers.append(server)
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(servers, data, stop), daemon=True)
    sender.start()
    stack.callback(sender.join, 15)
    stack.callback(stop.set)
    return servers


def evaluate(url: str, intervals: Intervals, evaluations: int) -> tuple[dict[str, float], float, dict]:
    """Rule-group durations (the longest of each over `evaluations` evaluations), Prometheus's CPU share meanwhile,
    and its own /metrics at the end."""
    # The first evaluation sees one scrape, and rates need two: wait one scrape interval, then read
    # Prometheus's own /metrics after each of the requested evaluations (it does not scrape itself here,
    # so that its head holds only what the pods and the rules put there).
    time.sleep(seconds(intervals.scrape))
    groups: dict[str, float] = {}
    cpu_before, cpu_started = _cpu_seconds(own_metrics(url)), time.monotonic()
    own: dict = {}
    for _ in range(evaluations):
        time.sleep(seconds(intervals.evaluation))
        own = own_metrics(url)
        for labels, value in own.get("prometheus_rule_group_last_duration_seconds", []):
            name = labels["rule_group"].rsplit(";", 1)[-1]
            groups[name] = max(groups.get(name, 0.0), value)
    return groups, (_cpu_seconds(own) - cpu_before) / (time.monotonic() - cpu_started), own


def scrape_durations(url: str, window: str) -> dict[str, dict[str, float]]:
    """{"max" | "avg": {instance: scrape duration over `window`}} of every pod target."""
    return {
        fn: {
            r["metric"]["instance"]: float(r["value"][1])
            for r in query(url, f'{fn}_over_time(scrape_duration_seconds{{pod!=""}}[{window}])')
        }
        for fn in ("max", "avg")
    }


def pod_scrape_cost(server: Server, light_ports: list[int]) -> tuple[int, int, float, float]:
    """Bytes of a real and of a light pod's exposition, a real pod's GET /metrics time (median), and its
    master's CPU per scrape."""
    light_bytes = 0
    if light_ports:
        light_bytes = len(requests.get(f"http://127.0.0.1:{light_ports[0]}/metrics", timeout=10).content)
    real_bytes = len(server.scrape().encode())
    get_metrics, scrape_cpu = scrape_cost(server, SCRAPE_REPEATS)
    return real_bytes, light_bytes, get_metrics, scrape_cpu


def scrape_cost(server: Server, repeats: int) -> tuple[float, float]:
    """The median wall time of a GET /metrics as Prometheus sends it, and the master's CPU seconds per GET (the
    master serves /metrics and nothing else, workers answer requests: its CPU is the exposition's)."""
    before = cpu_seconds(server.process.pid)
    wall = statistics.median(_timed(server.metrics) for _ in range(repeats))
    return wall, (cpu_seconds(server.process.pid) - before) / repeats


def spread(durations: dict[str, dict[str, float]], real_names: set[str], real_targets: bool) -> tuple[float, float]:
    """Median of the average and the maximum scrape duration, over the real (or the light) targets."""
    wanted = [k for k in durations["max"] if (k in real_names) == real_targets]
    if not wanted:
        return float("nan"), float("nan")
    return statistics.median(durations["avg"][k] for k in wanted), max(durations["max"][k] for k in wanted)


def measure(
    pods: int, features: int, real_pods: int, evaluations: int, workdir: Path, drift_features: int = DRIFT_FEATURES
) -> Measured:
    load_before = load()
    started = time.monotonic()
    objects = render()
    intervals = cluster_intervals(objects)
    data = dataset(features)
    model_dir = workdir / "model"
    metadata = write_artefact(*train(dataset=data, drift_features=drift_features), model_dir)
    real = min(real_pods, pods)
    with ExitStack() as stack:
        servers = start_pods(stack, workdir, model_dir, real, data)
        time.sleep(3)  # a few batches counted and flushed before the exposition is recorded
        recorded = servers[0].scrape()
        light_ports = stack.enter_context(light_targets(recorded, pods - real))
        ports = [int(s.metrics.rsplit(":", 1)[1].split("/", 1)[0]) for s in servers] + light_ports
        config = prometheus_config(objects, pods, ports, workdir / "rules.yaml", intervals)
        url, pid = stack.enter_context(prometheus(workdir, config, rule_groups(objects)))
        groups, cpu_share, own = evaluate(url, intervals, evaluations)
        durations = scrape_durations(url, f"{seconds(intervals.evaluation) * evaluations:.0f}s")
        samples = query(url, 'max(scrape_samples_scraped{pod!=""})')
        labels = {k: v for k, v in _target_labels(url).items() if k in ("namespace", "job")}
        drift = query_seconds(url, drift_panel_expr({**labels, "datasource": "prometheus"}))
        rss = rss_bytes(pid)
        real_bytes, light_bytes, get_metrics, scrape_cpu = pod_scrape_cost(servers[0], light_ports)
    real_names = {f"127.0.0.1:{port}" for port in ports[:real]}
    return Measured(
        pods=pods,
        features=features,
        monitored=len(metadata["reference"]["features"]),
        head_series=int(own["prometheus_tsdb_head_series"][0][1]),
        series_per_pod=len(parse_exposition(recorded)[1]),
        scrape_bytes_real=real_bytes,
        scrape_bytes_light=light_bytes,
        scrape_seconds_real=spread(durations, real_names, True),
        scrape_seconds_light=spread(durations, real_names, False),
        get_metrics_seconds=get_metrics,
        scrape_cpu_seconds=scrape_cpu,
        prometheus_cpu_share=cpu_share,
        samples_per_scrape=int(float(samples[0]["value"][1])),
        rule_groups=groups,
        evaluation_seconds=max(v for _, v in own["prometheus_rule_group_interval_seconds"]),
        rss_bytes=rss,
        drift_query_seconds=drift,
        load_before=load_before,
        load_after=load(),
        wall_seconds=time.monotonic() - started,
    )


def _target_labels(url: str) -> dict[str, str]:
    return query(url, 'up{pod!=""}')[0]["metric"]


def _ms(pair: tuple[float, float]) -> str:
    return f"{pair[0] * 1000:.1f}/{pair[1] * 1000:.1f}"


def _timed(url: str) -> float:
    """One GET as Prometheus 2.42 scrapes: OpenMetrics preferred, gzip, a new connection."""
    started = time.perf_counter()
    requests.get(url, headers=SCRAPE_HEADERS, timeout=10).raise_for_status()
    return time.perf_counter() - started


def _cpu_seconds(own: dict[str, list[tuple[dict[str, str], float]]]) -> float:
    return own["process_cpu_seconds_total"][0][1]


def report(m: Measured) -> str:
    lines = [
        f"== pods {m.pods}, features {m.features} (drift bins on {m.monitored}); "
        f"load before {m.load_before}, after {m.load_after}; {m.wall_seconds:.0f} s",
        f"head series {m.head_series}; series per pod {m.series_per_pod}; samples per scrape {m.samples_per_scrape}",
        f"scrape_duration_seconds per target, typical/max ms: real pods {_ms(m.scrape_seconds_real)} "
        f"({m.scrape_bytes_real} bytes), light targets {_ms(m.scrape_seconds_light)} ({m.scrape_bytes_light} bytes); "
        f"GET /metrics of a real pod timed here: {m.get_metrics_seconds * 1000:.1f} ms (median), "
        f"{m.scrape_cpu_seconds * 1000:.1f} ms CPU of its master per scrape",
        f"prometheus RSS {m.rss_bytes / 2**20:.0f} MiB, CPU {m.prometheus_cpu_share:.1%} of a core; "
        f"drift panel query {m.drift_query_seconds * 1000:.1f} ms",
        f"rule groups (max last duration, ms; evaluation interval {m.evaluation_seconds:g} s):",
    ]
    for name, value in sorted(m.rule_groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:<32} {value * 1000:8.2f} ms  {value / m.evaluation_seconds:7.3%} of the interval")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[10], help="targets (pods) per run")
    parser.add_argument("--features", type=int, nargs="+", default=[100], help="model width(s)")
    parser.add_argument("--real-pods", type=int, default=2, help="how many targets are real gunicorn pods")
    parser.add_argument("--evaluations", type=int, default=4, help="rule evaluations to wait for per size")
    parser.add_argument(
        "--drift-features", type=int, default=DRIFT_FEATURES, help="drift bins on at most this many features"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements as JSON lines here")
    args = parser.parse_args(argv)
    # A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the pods and Prometheus are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if shutil.which("prometheus") is None:
        print("prometheus is not on PATH (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    print(f"{socket.gethostname()}: {os.cpu_count()} CPUs; {_prometheus_version()}")
    results = []
    for features in args.features:
        for pods in args.pods:
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                measured = measure(pods, features, args.real_pods, args.evaluations, Path(tmp), args.drift_features)
            print(report(measured), flush=True)
            results.append(measured)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(measured.__dict__) + "\n")
    return 0


def _prometheus_version() -> str:
    return subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
