"""This service next to the model servers a user would pick instead, serving the same model file, in one run.

    python -m benchmarks.peers [--seconds 10] [--rounds 6] [--warmup 2] [--sizes 1 256] [--connections 4 16]
                               [--threads 2]
                               [--servers this kserve mlserver] [--variant NAME=GUNICORN_CMD_ARGS ...]
    make bench-peers

- this: THE gunicorn command (app/gunicorn.conf.py: 2 workers here, one thread each serving on its poller), every
  metric on, access log on.
- kserve: KServe 0.21's Python model server, a minimal sklearn `kserve.Model` in the shape of KServe's own
  sklearnserver (benchmarks/peer_servers/kserve_sklearn.py), V1 protocol, `--workers 2` (uvicorn processes).
- mlserver: MLServer 1.7.1 with mlserver-sklearn, V2 protocol with `predict_proba` requested,
  `parallel_workers: 2` (inference processes behind one HTTP front process).

The peers go into their own virtualenvs under $PEERS_DIR (default .state/peers; created once, minutes the
first time), never into the project's. MLServer 1.7.1 needs uvloop 0.21.0 to start its inference workers
(SeldonIO/MLServer#2286). scikit-learn, numpy and joblib are pinned to requirements.lock in all three, so the
one joblib file written by `python -m app.train` loads the same everywhere. Every server listens on 127.0.0.1
only (checked from /proc before any load is sent).

Load: wrk (`apt-get install wrk`) with keep-alive connections, or, where wrk is missing, a Python keep-alive
client in one process per connection (slower: it saturates sooner); the output says which. Each round runs
every server once per batch size, in a rotating order, so that none always runs on a warmer or busier machine;
the figures are medians over rounds. Every measured run follows `--warmup` seconds of the same load, unmeasured,
so that none starts on a machine left idle by the wait below and another on a busy one. Before the load, the
256-row answers of all servers are compared.
The guard (harness/quiet.py): before each run, the benchmark waits (up to `--settle` seconds) for the 1-minute
load to fall under 1.0; it prints the load before and after every run and the CPU other processes used
meanwhile. A run that started above 1.0 is flagged, and every goal line then reads "not measured": a ratio
taken on a busy machine is not evidence. The per-round ratio spread says how much rounds disagreed.
For each run the table also gives what tells a slow round's cause: the server's connections per process halfway
through (an uneven split), its context switches and page faults per request (more work, or waits), and the CPUs it
kept busy. A round with the same split, the same kernel work and the same CPUs busy, but more CPU per request,
points at a slower CPU rather than at the server.
Goals, at every connection count: >= 1.25x KServe's req/s at 1 row and >= 1.15x its rows/s at 256 rows
(medians), a p99 no higher than KServe's at both sizes, and every round of this project at >= 0.85x its own
median (no collapsed round).
`--variant` adds this project under other gunicorn settings, e.g. `--variant sync="--worker-class sync"`
(leading `VAR=value` words set the server's environment: `--variant t1="WEB_CONCURRENCY=1 --threads 8"`):
that is how the worker model was chosen (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from benchmarks.connections import connections_per_process, spread
from benchmarks.drivers import run_python_client, run_wrk
from benchmarks.process_tree import cpu_seconds, is_loopback, kernel_work, listening_addresses, rss_mib, tree
from benchmarks.servers import Peer, ensure_venv, http_request, start_kserve, start_mlserver, start_this, wait_ready
from declarations.paths import ROOT
from harness.quiet import LOAD_LIMIT, SETTLE_SECONDS, LoadGuard

# ---- the run -----------------------------------------------------------------------------------------------


def check_answers(peers: list[Peer], rows: list[list[float]]) -> str:
    answers = {}
    for peer in peers:
        status, payload = http_request(peer.url, peer.body(rows))
        if status != 200:
            raise RuntimeError(f"{peer.name} answered {status}: {payload[:300]!r}")
        answers[peer.name] = peer.probabilities(json.loads(payload))
    first = next(iter(answers.values()))
    for name, probabilities in answers.items():
        if probabilities.shape != first.shape or (probabilities.argmax(1) != first.argmax(1)).any():
            raise RuntimeError(f"{name} disagrees with {peers[0].name} on the predicted classes")
    spread = max(float(np.abs(p - first).max()) for p in answers.values())
    return f"{len(rows)} rows: the same class for every row from all {len(peers)}; probabilities within {spread:.1e}"


def sample_rows(n: int) -> list[list[float]]:
    """n rows around the wine data (deterministic), so that all three classes occur."""
    from sklearn.datasets import load_wine

    data = load_wine().data
    picked = data[np.arange(n) * 7 % len(data)]
    return [[float(v) for v in row] for row in picked]


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}, load {load}"
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one measuring run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--warmup",
        type=int,  # wrk takes whole seconds
        default=2,
        metavar="SECONDS",
        help="unmeasured load at the same size and connections right before every measured run (0: none)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 256], help="rows per request")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[4, 16], help="keep-alive connections (wrk -c), each in turn"
    )
    parser.add_argument("--threads", type=int, default=2, help="load generator threads (wrk -t)")
    parser.add_argument("--servers", nargs="+", default=["this", "kserve", "mlserver"])
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='this project again under other gunicorn settings, e.g. sync="--worker-class sync"',
    )
    parser.add_argument("--install-only", action="store_true", help="create the peers' virtualenvs and stop")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help=f"before each run, wait up to this long for the 1-minute load to fall under {LOAD_LIMIT} (0: never wait)",
    )
    return parser.parse_args()


def load_generator(args: argparse.Namespace) -> tuple[Callable[..., dict[str, float]], str]:
    """wrk when installed, else the Python keep-alive client; and a line that says which, with its settings."""
    if shutil.which("wrk"):
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
        return run_wrk, f"{version}, -t{args.threads}, keep-alive"
    return run_python_client, "Python keep-alive client (wrk not found), one process per connection"


def start_peers(args: argparse.Namespace, work: Path, model: Path, peers: list[Peer]) -> None:
    """Start the servers asked for into `peers` (so that the caller stops whatever started), wait until each
    answers, and refuse one that listens beyond the loopback interface."""
    starters: dict[str, Callable[[], Peer]] = {
        "this": lambda: start_this(work, model),
        "kserve": lambda: start_kserve(work, model),
        "mlserver": lambda: start_mlserver(work, model),
    }
    for variant in args.variant:
        name, _, gunicorn_args = variant.partition("=")
        starters[name] = lambda name=name, gunicorn_args=gunicorn_args: start_this(work, model, name, gunicorn_args)
    for name in [*args.servers, *(v.partition("=")[0] for v in args.variant)]:
        peers.append(starters[name]())
    for peer in peers:
        wait_ready(peer)
        addresses = listening_addresses(peer.process.pid)
        shown = ", ".join(sorted(f"{address}:{port}" for address, port in addresses))
        if not addresses or not all(is_loopback(address) for address, _ in addresses):
            raise RuntimeError(f"{peer.name} listens beyond the loopback interface: {shown}")
        print(f"  {peer.name:<10} {peer.description}; listens on {shown}")


def write_bodies(peers: list[Peer], sizes: list[int], work: Path) -> None:
    """Each server's request body at each size, written once; every worker's first-call paths warmed."""
    for size in sizes:
        rows = sample_rows(size)
        for peer in peers:
            peer.bodies[size] = work / f"{peer.name}-{size}.json"
            peer.bodies[size].write_bytes(peer.body(rows))
            for _ in range(20):
                http_request(peer.url, peer.body(rows))


def measure(peer: Peer, size: int, conns: int, round_: int, args: argparse.Namespace, generator, guard) -> dict:
    """One run of the load generator against one server, with its CPU, memory and the machine's load."""
    pid, port = peer.process.pid, urlsplit(peer.url).port
    held: list[dict[int, int]] = []
    # Halfway through, every connection is open: how they are spread over the server's processes.
    halfway = threading.Timer(args.seconds / 2, lambda: held.append(connections_per_process(tree(pid), port)))
    with guard.round(f"round {round_ + 1}, {size} rows, -c{conns}, {peer.name}") as measured:
        # The same start for every run, whatever idle wait came before it: the server and the machine already busy.
        if args.warmup > 0:
            generator(peer.url, peer.bodies[size], args.warmup, conns, args.threads)
        cpu_before, kernel_before = cpu_seconds(pid), kernel_work(pid)
        halfway.start()
        result = generator(peer.url, peer.bodies[size], args.seconds, conns, args.threads)
        cpu, kernel_after = cpu_seconds(pid) - cpu_before, kernel_work(pid)
    halfway.join()
    served = max(result["requests"], 1)
    result["cpu_ms"] = 1000 * cpu / served
    result["switches"] = (kernel_after[0] - kernel_before[0]) / served
    result["faults"] = (kernel_after[1] - kernel_before[1]) / served
    result["spread"] = "+".join(str(n) for n in spread(held[0]) if n) if held else "?"
    result["rss_mib"] = rss_mib(peer.process.pid)
    result["rows_per_s"] = result["rps"] * size
    result["round"] = round_ + 1
    result["load_before"], result["load_after"] = measured.before[0], measured.after[0]
    result["foreign_cpus"] = measured.foreign_cpus
    result["busy"] = measured.busy
    if result["failed"]:
        raise RuntimeError(f"{peer.name}: {result['failed']} failed requests at {size} rows")
    print(
        f"  round {round_ + 1}, {size:>3} rows, -c{conns:<3} {peer.name:<10} {result['rps']:>7.0f} req/s, "
        f"p99 {result['p99_ms']:6.2f} ms; {measured.describe()}",
        flush=True,
    )
    return result


def main() -> None:
    args = arguments()
    if args.install_only:
        for name in ("kserve", "mlserver"):
            ensure_venv(name)
        return
    generator, load = load_generator(args)
    print(f"machine: {machine()}")
    print(f"load: {load}, {args.seconds:.0f}s per run, {args.rounds} rounds, servers in rotating order (medians)")

    work = Path(tempfile.mkdtemp(prefix="peers-"))
    model = work / "model"
    subprocess.run([sys.executable, "-m", "app.train", "--out", str(model)], cwd=ROOT, check=True, capture_output=True)
    peers: list[Peer] = []
    try:
        start_peers(args, work, model, peers)
        print("answers: " + check_answers(peers, sample_rows(256)))
        write_bodies(peers, args.sizes, work)
        guard = LoadGuard(settle_seconds=args.settle)
        for conns in args.connections:
            print(f"\n{conns} kept-alive connections:")
            runs: dict[tuple[str, int], list[dict[str, float]]] = {}
            for round_ in range(args.rounds):
                for size in args.sizes:
                    # Rotating order: no server always runs first, on a machine warmer or quieter than the others'.
                    shift = round_ % len(peers)
                    for peer in peers[shift:] + peers[:shift]:
                        result = measure(peer, size, conns, round_, args, generator, guard)
                        runs.setdefault((peer.name, size), []).append(result)
            report(peers, args.sizes, runs, guard, conns)
    finally:
        for peer in peers:
            peer.stop()


# At least these multiples of KServe's req/s at 1 row and rows/s at 256 rows (medians).
GOAL_RATIOS = {1: ("rps", "req/s", 1.25), 256: ("rows_per_s", "rows/s", 1.15)}
# No round of this project below this share of its own median.
ROUND_FLOOR = 0.85
NUMERIC = ("rps", "rows_per_s", "p50_ms", "p99_ms", "cpu_ms", "rss_mib")


def report(peers: list[Peer], sizes: list[int], runs: dict, guard: LoadGuard, conns: int) -> None:
    median = {key: {k: statistics.median(r[k] for r in rs) for k in NUMERIC} for key, rs in runs.items()}
    print_runs(runs, conns)
    print_medians(peers, sizes, median, conns)
    print(f"machine during the runs: {guard.summary()}")
    names = [p.name for p in peers]
    if "this" not in names:
        return
    for other in (n for n in names if n != "this"):
        for size in sizes:
            print_ratios(runs, median, other, size)
    print()
    print_goals(names, sizes, runs, median, guard, conns)


def print_runs(runs: dict, conns: int) -> None:
    print()
    print(
        f"Every run at -c{conns}: the server's CPUs busy (CPU per request x req/s), its connections per process "
        "halfway through, context switches and page faults per request; the 1-minute load before and after it and "
        "the CPUs other processes used:"
    )
    print()
    print(
        "| round | rows/request | server | req/s | p99 ms | CPU ms/request | CPUs busy | connections | switches "
        "| faults | load before | load after | other CPUs | |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for (name, size), results in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        for r in results:
            flag = f"busy (> {LOAD_LIMIT})" if r["busy"] else ""
            print(
                f"| {r['round']} | {size} | {name} | {r['rps']:.0f} | {r['p99_ms']:.2f} | {r['cpu_ms']:.3f} | "
                f"{r['cpu_ms'] * r['rps'] / 1000:.2f} | {r['spread']} | {r['switches']:.2f} | {r['faults']:.2f} | "
                f"{r['load_before']:.2f} | {r['load_after']:.2f} | {r['foreign_cpus']:.2f} | {flag} |"
            )


def print_medians(peers: list[Peer], sizes: list[int], median: dict, conns: int) -> None:
    print()
    print(f"Medians at -c{conns}:")
    print()
    print("| server | rows/request | req/s | rows/s | p50 ms | p99 ms | server CPU ms/request | per row µs | RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for peer in peers:
            m = median[(peer.name, size)]
            print(
                f"| {peer.name} | {size} | {m['rps']:.0f} | {m['rows_per_s']:.0f} | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['cpu_ms']:.3f} | {1000 * m['cpu_ms'] / size:.2f} | {m['rss_mib']:.0f} |"
            )
    print()


def print_ratios(runs: dict, median: dict, other: str, size: int) -> None:
    this, them = median[("this", size)], median[(other, size)]
    # Each round ran both servers back to back: the spread of the per-round ratios says how far one round's
    # machine differed from another's.
    pairs = list(zip(runs[("this", size)], runs[(other, size)], strict=True))
    ratios = [a["rps"] / b["rps"] for a, b in pairs]
    cpu_ratios = [a["cpu_ms"] / b["cpu_ms"] for a, b in pairs]
    print(
        f"this / {other} at {size:>3} rows: throughput {this['rps'] / them['rps']:.2f}x "
        f"(per round {min(ratios):.2f}x to {max(ratios):.2f}x), "
        f"server CPU per request {this['cpu_ms'] / them['cpu_ms']:.2f}x "
        f"(per round {min(cpu_ratios):.2f}x to {max(cpu_ratios):.2f}x), "
        f"p50 {this['p50_ms'] / them['p50_ms']:.2f}x, p99 {this['p99_ms'] / them['p99_ms']:.2f}x"
    )


def lowest_round(names: list[str], size: int, runs: dict, median: dict, index: int) -> str:
    """This project's lowest round next to the other servers' same round: when they all fell, the machine did."""
    this = runs[("this", size)][index]
    line = f"round {this['round']}, CPU per request {this['cpu_ms'] / median[('this', size)]['cpu_ms']:.2f}x its median"
    others = [
        f"{name} at {runs[(name, size)][index]['rps'] / median[(name, size)]['rps']:.2f}x"
        for name in names
        if name != "this"
    ]
    whose = "its median" if len(others) == 1 else "their medians"
    return line + (f"; the same round: {', '.join(others)} {whose}" if others else "")


def print_goals(names: list[str], sizes: list[int], runs: dict, median: dict, guard: LoadGuard, conns: int) -> None:
    for size in sizes:
        rounds = [r["rps"] / median[("this", size)]["rps"] for r in runs[("this", size)]]
        print(
            f"goal at -c{conns}: every round >= {ROUND_FLOOR:.2f}x its median at {size} row(s): "
            f"{guard.verdict(min(rounds) >= ROUND_FLOOR)} (lowest {min(rounds):.2f}x of {len(rounds)} rounds: "
            f"{lowest_round(names, size, runs, median, rounds.index(min(rounds)))})"
        )
        if "kserve" not in names:
            continue
        this, them = median[("this", size)], median[("kserve", size)]
        if size in GOAL_RATIOS:
            figure, unit, goal = GOAL_RATIOS[size]
            ratio = this[figure] / them[figure]
            print(
                f"goal at -c{conns}: >= {goal:.2f}x KServe's {unit} at {size} row(s): "
                f"{guard.verdict(ratio >= goal)} ({ratio:.2f}x)"
            )
        print(
            f"goal at -c{conns}: p99 <= KServe's at {size} row(s): "
            f"{guard.verdict(this['p99_ms'] <= them['p99_ms'])} "
            f"({this['p99_ms']:.2f} ms against {them['p99_ms']:.2f} ms)"
        )


if __name__ == "__main__":
    main()
