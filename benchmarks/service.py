"""What instrumentation costs, measured in one run on this machine.

    python -m benchmarks.service [--seconds 8] [--rounds 3] [--scrape-requests 100000]

Starts THE gunicorn command twice (metrics on, and METRICS_ENABLED=0), drives both with the same
closed-loop keep-alive clients in alternating rounds, at 1 row and at 256 rows per request, and prints
throughput, rows/s, p50/p99 and server CPU per request side by side with their ratios; then /predict against
the bare /healthz of the same server; then the /metrics scrape time of a 4-worker server after
`--scrape-requests` predictions. Figures are only comparable within one run. Each run records the load
before and after it (harness/quiet.py); a run that starts with the 1-minute load above 1.0 is flagged and the
goal lines read "not measured".

`make bench` runs this after `python -m benchmarks.inprocess` (CPU per request in-process). Not run by it:
`python -m benchmarks.churn` (worker recycling: files and scrape time after 1000 recycles, a few minutes) and
`python -m benchmarks.peers` (`make bench-peers`: next to KServe and MLServer).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.load import ROW
from harness.quiet import LOAD_LIMIT, SETTLE_SECONDS, LoadGuard
from harness.server import start_server

SIZES = (1, 256)
BODIES = {rows: json.dumps({"instances": [ROW] * rows}).encode() for rows in SIZES}


def _client(args: tuple[str, str, int, float]) -> list[float]:
    """One closed-loop client on one keep-alive connection: request after request for `seconds`; returns
    latencies in seconds."""
    address, path, rows, seconds = args
    host, port = address.rsplit(":", 1)
    latencies = []
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    deadline = time.perf_counter() + seconds
    while (now := time.perf_counter()) < deadline:
        if path == "/predict":
            connection.request("POST", path, BODIES[rows], {"Content-Type": "application/json"})
        else:
            connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
        latencies.append(time.perf_counter() - now)
    connection.close()
    return latencies


def measure(pool, address: str, path: str, seconds: float, clients: int, rows: int = 1) -> list[float]:
    results = pool.map(_client, [(address, path, rows, seconds)] * clients)
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
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help=f"before each run, wait up to this long for the 1-minute load to fall under {LOAD_LIMIT}",
    )
    args = parser.parse_args()
    guard = LoadGuard(settle_seconds=args.settle)

    from app.train import train, write_artefact

    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    write_artefact(*train(), tmp / "model")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    servers = {}
    for name, env in {"instrumented": {}, "bare": {"METRICS_ENABLED": "0"}}.items():
        (tmp / name).mkdir()
        servers[name] = start_server(tmp / name, tmp / "model", workers=args.workers, **env)
    try:
        runs = rounds(servers, args, guard)
        report(runs, args, guard)
    finally:
        for server in servers.values():
            server.stop()
    scrape_timing(tmp, args.scrape_requests, args.clients)


def rounds(servers: dict, args: argparse.Namespace, guard: LoadGuard) -> dict[tuple[str, str, int], list[dict]]:
    """Every round: each server at each size, /healthz once, in an order that alternates from round to round."""
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with multiprocessing.Pool(args.clients) as pool:
        order = [(name, "/predict", rows) for rows in SIZES for name in ("instrumented", "bare")]
        order.append(("instrumented", "/healthz", 0))
        for round_ in range(args.rounds):
            # Alternate the order so that neither configuration always runs on a warmer (or busier) machine.
            for name, path, rows in order if round_ % 2 == 0 else order[::-1]:
                server = servers[name]
                address = server.app.removeprefix("http://")
                with guard.round(f"round {round_ + 1}, {name} {path} {rows} rows") as measured:
                    cpu_before = server_cpu_seconds(server.process.pid)
                    latencies = measure(pool, address, path, args.seconds, args.clients, rows)
                    cpu = server_cpu_seconds(server.process.pid) - cpu_before
                label = f"round {round_ + 1}, {name:<12} {path:<9} {rows:>3} rows"
                print(f"  {label}: {measured.describe()}", flush=True)
                runs.setdefault((name, path, rows), []).append(describe(latencies, args.seconds, cpu))
    return runs


def report(runs: dict[tuple[str, str, int], list[dict]], args: argparse.Namespace, guard: LoadGuard) -> None:
    median = {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for key, rs in runs.items()}
    print(f"\n{args.rounds} rounds of {args.seconds:.0f}s, {args.clients} keep-alive clients, {args.workers} "
          "workers (medians)")  # fmt: skip
    print(f"{'server':<14}{'endpoint':<10}{'rows':>5}{'req/s':>9}{'rows/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'server CPU us/req':>19}")  # fmt: skip
    for (name, path, rows), m in median.items():
        rows_per_s = f"{m['rps'] * rows:.0f}" if rows else ""
        print(f"{name:<14}{path:<10}{rows or '':>5}{m['rps']:>9.0f}{rows_per_s:>9}"
              f"{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}{m['cpu_us']:>19.0f}")  # fmt: skip
    print(f"\nmachine during the runs: {guard.summary()}")
    for rows in SIZES:
        on, off = median[("instrumented", "/predict", rows)], median[("bare", "/predict", rows)]
        ratio = on["rps"] / off["rps"]
        verdict = guard.verdict(ratio >= 0.95)
        print(f"{rows:>3} row(s): instrumentation cost: throughput ratio on/off = {ratio:.3f} "
              f"({100 * (1 - ratio):+.1f} % lost; target <= 5 %: {verdict}), "
              f"p50 ratio {on['p50_ms'] / off['p50_ms']:.3f}, "
              f"p99 ratio {on['p99_ms'] / off['p99_ms']:.3f}; server CPU per request on/off = "
              f"{on['cpu_us'] / off['cpu_us']:.3f} ({on['cpu_us'] - off['cpu_us']:+.0f} us)")  # fmt: skip
    on, bare_endpoint = median[("instrumented", "/predict", 1)], median[("instrumented", "/healthz", 0)]
    ratio = on["rps"] / bare_endpoint["rps"]
    print(f"/predict (1 row) vs /healthz on the same server: throughput ratio {ratio:.3f}")


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
