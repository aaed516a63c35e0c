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
import http.server
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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import yaml

from alerts import panels
from app.train import DRIFT_FEATURES, Dataset, synthetic, train, wine, write_artefact
from declarations.durations import seconds
from declarations.helm import chart_values
from declarations.manifests import one, render, rule_groups
from declarations.paths import DASHBOARD
from declarations.scrape import scrape_configs
from harness.exposition import by_name
from harness.server import Server, free_port, start_server, wait_for
from offcluster.stack import find_binary

WINE_FEATURES = 13
CUMULATIVE = {"counter", "histogram", "summary"}
TRAFFIC_ROWS = 8  # rows per /predict of the background traffic
TRAFFIC_PAUSE = 0.2  # seconds between two requests to one real pod
FEEDBACK_EVERY = 5  # one /feedback per this many /predict
QUERY_REPEATS = 5
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
                    {"predicted": p, "actual": data.class_names[t], "model_version": answer["model_version"]}
                    for p, t in zip(answer["predictions"], data.target[picked], strict=True)
                ]
                session.post(f"{server.app}/feedback", json={"feedback": items}, timeout=10)
        stop.wait(TRAFFIC_PAUSE)


# -- light targets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    head: str  # the sample's name and labels, as exposed
    value: float
    cumulative: bool


def parse_exposition(text: str) -> tuple[list[str], list[Line]]:
    """Comment lines and samples of a text exposition; a sample is cumulative when its family is a counter,
    histogram or summary (by the family's `# TYPE`)."""
    types: dict[str, str] = {}
    comments: list[str] = []
    lines: list[Line] = []
    for raw in text.splitlines():
        if not raw:
            continue
        if raw.startswith("#"):
            comments.append(raw)
            parts = raw.split(" ", 3)
            if parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        head, value = raw.rsplit(" ", 1)
        name = head.split("{", 1)[0]
        bases = (name.removesuffix(suffix) for suffix in ("_total", "_bucket", "_count", "_sum", ""))
        family = next((base for base in bases if base in types), name)
        lines.append(Line(head, float(value), types.get(family) in CUMULATIVE))
    return comments, lines


class LightTarget:
    """One pod's worth of /metrics: the recorded exposition, cumulative series grown by `growth` per second
    relative to their recorded value (a zero stays zero, as a bin nobody hits does)."""

    def __init__(self, comments: list[str], lines: list[Line], growth: float) -> None:
        self.comments = "\n".join(comments) + "\n"
        self.lines = lines
        self.growth = growth
        self.started = time.monotonic()

    def body(self) -> bytes:
        factor = 1.0 + self.growth * (time.monotonic() - self.started)
        samples = (f"{line.head} {line.value * factor if line.cumulative else line.value:.10g}" for line in self.lines)
        return (self.comments + "\n".join(samples) + "\n").encode()


@contextmanager
def light_targets(text: str, count: int) -> Iterator[list[int]]:
    """`count` light targets on free 127.0.0.1 ports; yields their ports."""
    comments, lines = parse_exposition(text)
    servers = []

    for i in range(count):
        target = LightTarget(comments, lines, growth=0.002 * (1 + i % 7))

        class Handler(http.server.BaseHTTPRequestHandler):
            source = target

            def do_GET(self) -> None:
                body = self.source.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


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
    stop = threading.Event()
    with ExitStack() as stack:
        servers = []
        for i in range(real):
            directory = workdir / f"pod{i}"
            directory.mkdir()
            server = start_server(directory, model_dir, workers=2)
            stack.callback(server.stop, signal.SIGKILL, 5)
            servers.append(server)
        sender = threading.Thread(target=traffic, args=(servers, data, stop), daemon=True)
        sender.start()
        stack.callback(sender.join, 15)
        stack.callback(stop.set)
        time.sleep(3)  # a few batches counted and flushed before the exposition is recorded
        recorded = servers[0].scrape()
        light_ports = stack.enter_context(light_targets(recorded, pods - real))
        ports = [int(s.metrics.rsplit(":", 1)[1].split("/", 1)[0]) for s in servers] + light_ports
        config = prometheus_config(objects, pods, ports, workdir / "rules.yaml", intervals)
        url, pid = stack.enter_context(prometheus(workdir, config, rule_groups(objects)))
        # The first evaluation sees one scrape, and rates need two: wait one scrape interval, then read
        # Prometheus's own /metrics after each of the requested evaluations (it does not scrape itself here,
        # so that its head holds only what the pods and the rules put there).
        time.sleep(seconds(intervals.scrape))
        groups: dict[str, float] = {}
        cpu_before, cpu_started = _cpu_seconds(own_metrics(url)), time.monotonic()
        for _ in range(evaluations):
            time.sleep(seconds(intervals.evaluation))
            own = own_metrics(url)
            for labels, value in own.get("prometheus_rule_group_last_duration_seconds", []):
                name = labels["rule_group"].rsplit(";", 1)[-1]
                groups[name] = max(groups.get(name, 0.0), value)
        cpu_share = (_cpu_seconds(own) - cpu_before) / (time.monotonic() - cpu_started)
        evaluation = max(v for _, v in own["prometheus_rule_group_interval_seconds"])
        head = int(own["prometheus_tsdb_head_series"][0][1])
        window = f"{seconds(intervals.evaluation) * evaluations:.0f}s"
        durations = {
            fn: {
                r["metric"]["instance"]: float(r["value"][1])
                for r in query(url, f'{fn}_over_time(scrape_duration_seconds{{pod!=""}}[{window}])')
            }
            for fn in ("max", "avg")
        }
        samples = query(url, 'max(scrape_samples_scraped{pod!=""})')
        labels = {k: v for k, v in _target_labels(url).items() if k in ("namespace", "job")}
        drift = query_seconds(url, drift_panel_expr({**labels, "datasource": "prometheus"}))
        rss = rss_bytes(pid)
        light_bytes = 0
        if light_ports:
            light_bytes = len(requests.get(f"http://127.0.0.1:{light_ports[0]}/metrics", timeout=10).content)
        real_bytes = len(servers[0].scrape().encode())
        master_cpu = _process_cpu_seconds(servers[0].process.pid)
        get_metrics = statistics.median(_timed(servers[0].metrics) for _ in range(SCRAPE_REPEATS))
        # The master serves /metrics and nothing else (workers answer requests): its CPU is the exposition's.
        scrape_cpu = (_process_cpu_seconds(servers[0].process.pid) - master_cpu) / SCRAPE_REPEATS
    real_names = {f"127.0.0.1:{port}" for port in ports[:real]}

    def spread(real_targets: bool) -> tuple[float, float]:
        wanted = [k for k in durations["max"] if (k in real_names) == real_targets]
        if not wanted:
            return float("nan"), float("nan")
        return statistics.median(durations["avg"][k] for k in wanted), max(durations["max"][k] for k in wanted)

    series_per_pod = len(parse_exposition(recorded)[1])
    return Measured(
        pods=pods,
        features=features,
        monitored=len(metadata["reference"]["features"]),
        head_series=head,
        series_per_pod=series_per_pod,
        scrape_bytes_real=real_bytes,
        scrape_bytes_light=light_bytes,
        scrape_seconds_real=spread(True),
        scrape_seconds_light=spread(False),
        get_metrics_seconds=get_metrics,
        scrape_cpu_seconds=scrape_cpu,
        prometheus_cpu_share=cpu_share,
        samples_per_scrape=int(float(samples[0]["value"][1])),
        rule_groups=groups,
        evaluation_seconds=evaluation,
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


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
