"""What instrumentation costs, measured in one run on this machine.

    python -m benchmarks.service [--seconds 8] [--rounds 3] [--scrape-requests 100000]

Starts THE gunicorn command twice (metrics on, and METRICS_ENABLED=0), drives both with the same
closed-loop client in alternating rounds, and prints throughput and p50/p99 side by side with their ratios;
then /predict against the bare /healthz of the same server; then the /metrics scrape time of a 4-worker
server after `--scrape-requests` predictions. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.load import BODY
from harness.server import start_server


def _client(args: tuple[str, str, float]) -> list[float]:
    """One closed-loop client: request after request for `seconds`; returns latencies in seconds."""
    address, path, seconds = args
    host, port = address.rsplit(":", 1)
    latencies = []
    deadline = time.perf_counter() + seconds
    while (now := time.perf_counter()) < deadline:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        if path == "/predict":
            connection.request("POST", path, BODY, {"Content-Type": "application/json"})
        else:
            connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        latencies.append(time.perf_counter() - now)
    return latencies


def measure(pool, address: str, path: str, seconds: float, clients: int) -> list[float]:
    results = pool.map(_client, [(address, path, seconds)] * clients)
    return [latency for result in results for latency in result]


def server_cpu_seconds(master: int) -> float:
    """User + system CPU of a gunicorn master and its live workers, from /proc."""
    pids = [master] + [int(p) for t in Path(f"/proc/{master}/task").glob("*/children") for p in t.read_text().split()]
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def describe(latencies: list[float], seconds: float, cpu_seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        # Server CPU per request is the steadier figure: the clients share the 2 CPUs and add their noise to
        # throughput, not to the server's own CPU time.
        "cpu_us": 1e6 * cpu_seconds / len(ordered),
        "rps": len(ordered) / seconds,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one measuring round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent closed-loop clients")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scrape-requests", type=int, default=100_000)
    args = parser.parse_args()

    from app.train import train, write_artefact

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    write_artefact(*train(), tmp / "model")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    servers = {}
    for name, env in {"instrumented": {}, "bare": {"METRICS_ENABLED": "0"}}.items():
        (tmp / name).mkdir()
        servers[name] = start_server(tmp / name, tmp / "model", workers=args.workers, **env)
    try:
        with multiprocessing.Pool(args.clients) as pool:
            runs: dict[tuple[str, str], list[dict[str, float]]] = {}
            order = [("instrumented", "/predict"), ("bare", "/predict"), ("instrumented", "/healthz")]
            for round_ in range(args.rounds):
                # Alternate the order so that neither configuration always runs on a warmer (or busier) machine.
                for name, path in order if round_ % 2 == 0 else order[::-1]:
                    server = servers[name]
                    cpu_before = server_cpu_seconds(server.process.pid)
                    latencies = measure(pool, server.app.removeprefix("http://"), path, args.seconds, args.clients)
                    cpu = server_cpu_seconds(server.process.pid) - cpu_before
                    runs.setdefault((name, path), []).append(describe(latencies, args.seconds, cpu))
        median = {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()}
        print(
            f"\n{args.rounds} rounds of {args.seconds:.0f}s, {args.clients} clients, {args.workers} workers (medians)"
        )
        print(f"{'server':<14}{'endpoint':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/req':>19}")
        for (name, path), m in median.items():
            print(f"{name:<14}{path:<10}{m['rps']:>9.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}{m['cpu_us']:>19.0f}")
        on, off = median[("instrumented", "/predict")], median[("bare", "/predict")]
        bare_endpoint = median[("instrumented", "/healthz")]
        ratio = on["rps"] / off["rps"]
        print(f"\ninstrumentation cost: throughput ratio on/off = {ratio:.3f} ({100 * (1 - ratio):+.1f} % lost; "
              f"target <= 5 %), p50 ratio {on['p50_ms'] / off['p50_ms']:.3f}, "
              f"p99 ratio {on['p99_ms'] / off['p99_ms']:.3f}")  # fmt: skip
        print(f"instrumentation cost in server CPU per request: ratio on/off = {on['cpu_us'] / off['cpu_us']:.3f} "
              f"({on['cpu_us'] - off['cpu_us']:+.0f} us)")  # fmt: skip
        print(f"/predict vs /healthz on the same server: throughput ratio {on['rps'] / bare_endpoint['rps']:.3f}")
    finally:
        for server in servers.values():
            server.stop()
    scrape_timing(tmp, args.scrape_requests, args.clients)


def scrape_timing(tmp: Path, n_requests: int, clients: int) -> None:
    (tmp / "scrape").mkdir()
    server = start_server(tmp / "scrape", tmp / "model", workers=4)
    try:
        address = server.app.removeprefix("http://")
        sent = 0
        started = time.perf_counter()
        with multiprocessing.Pool(clients) as pool:
            while sent < n_requests:
                sent += len(measure(pool, address, "/predict", 5.0, clients))
        fill = time.perf_counter() - started
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            server.scrape()
            timings.append(1000 * (time.perf_counter() - t0))
        files = len(list(server.multiproc.glob("*.db")))
        print(f"\n/metrics with 4 workers after {sent} requests ({fill:.0f}s to send), {files} multiprocess "
              f"files: scrape median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms "
              "(target < 50 ms)")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
