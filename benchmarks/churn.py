"""Worker churn, measured: the multiprocess directory and the /metrics scrape time after 0, 100 and 1000
worker recycles, and whether every count is still exact.

    python -m benchmarks.churn [--checkpoints 0 100 1000] [--max-requests 5] [--workers 2] [--no-fold]
                               [--scrape-interval 0.1]

Starts THE gunicorn command with MAX_REQUESTS small, drives POST /predict from closed-loop clients until the
workers have been recycled the given number of times, then (load paused) counts the files and times
`--scrapes` sequential scrapes of the master's /metrics; scrapes that fail while the load runs (every
`--scrape-interval` s) are counted. `--no-fold` runs the same with prometheus_client's
stock `mark_process_dead` as child_exit (dead workers' files left in place) for comparison.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from harness.exposition import Scraper, predict_200s
from harness.load import BODY, Load, host_port, post_once
from harness.processes import booted_workers, live_workers
from harness.server import ROOT, Server, start_server

STOCK_CHILD_EXIT = """
exec(open({conf!r}).read())


def child_exit(server, worker):
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(worker.pid)
"""


def launch(state: Path, model: Path, workers: int, max_requests: int, fold: bool) -> Server:
    config = None
    if not fold:
        config = state / "stock.conf.py"
        config.write_text(STOCK_CHILD_EXIT.format(conf=str(ROOT / "app" / "gunicorn.conf.py")))
    return start_server(state, model, workers, config=config, MAX_REQUESTS=str(max_requests), MAX_REQUESTS_JITTER="0")


def measure(server: Server, scrapes: int) -> dict[str, float]:
    session = requests.Session()
    durations = []
    for _ in range(scrapes):
        started = time.perf_counter()
        response = session.get(server.metrics, timeout=30)
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
    files = list(server.multiproc.glob("*.db"))
    return {
        "files": len(files),
        "kib": sum(f.stat().st_size for f in files) / 1024,
        "median_ms": statistics.median(durations) * 1000,
        "max_ms": max(durations) * 1000,
        "text": response.text,
    }


def run(args: argparse.Namespace) -> list[dict]:
    from app.train import train, write_artefact

    rows = []
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp:
        state = Path(tmp)
        model = state / "model"
        model.mkdir()
        write_artefact(*train(), model)
        server = launch(state, model, args.workers, args.max_requests, fold=not args.no_fold)
        try:
            master = server.process.pid
            booted = booted_workers(server.log)
            baseline = predict_200s(requests.get(server.metrics, timeout=10).text)
            # Fewer requests than one worker's quota: every live worker may have files, none has been recycled.
            address = host_port(server.app)
            warm = sum(post_once(address, BODY) == 200 for _ in range(args.max_requests - 1))
            sent = warm
            for checkpoint in sorted(args.checkpoints):
                scraper = Scraper(server.metrics, interval=args.scrape_interval)
                if booted_workers(server.log) - booted < checkpoint:
                    scraper.start()
                    load = Load(server.app, threads=args.threads).start()
                    deadline = time.monotonic() + args.timeout
                    while booted_workers(server.log) - booted < checkpoint and time.monotonic() < deadline:
                        time.sleep(0.1)
                    load.stop()
                    scraper.stop()
                    sent += load.ok
                    if load.failures or set(load.statuses) - {200}:
                        print(f"  clients saw {dict(load.statuses)} {dict(load.failures)}", file=sys.stderr)
                deadline = time.monotonic() + 15
                while len(live_workers(master)) < args.workers and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # the last dead worker reaped (and folded)
                figures = measure(server, args.scrapes)
                served = predict_200s(figures.pop("text")) - baseline
                row = {
                    "recycles": booted_workers(server.log) - booted,
                    "requests": sent,
                    "exact": served == sent,
                    "failed_scrapes": sum(scraper.errors.values()),
                    **figures,
                }
                rows.append(row)
                print(
                    f"  after {row['recycles']:>5} recycles: {row['files']:>5} files ({row['kib']:,.0f} KiB), "
                    f"scrape median {row['median_ms']:.1f} ms, max {row['max_ms']:.1f} ms, "
                    f"counts exact: {row['exact']} ({served:.0f}/{sent}), failed scrapes under load: "
                    f"{row['failed_scrapes']}",
                    flush=True,
                )
        finally:
            os.killpg(server.process.pid, signal.SIGTERM)
            server.process.wait(40)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[0, 100, 1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-requests", type=int, default=5, help="MAX_REQUESTS: requests per worker life")
    parser.add_argument("--threads", type=int, default=4, help="closed-loop client threads")
    parser.add_argument("--scrapes", type=int, default=30, help="sequential scrapes timed at each checkpoint")
    parser.add_argument("--scrape-interval", type=float, default=0.1, help="seconds between scrapes under load")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to reach one checkpoint")
    parser.add_argument("--no-fold", action="store_true", help="stock mark_process_dead instead of the fold")
    args = parser.parse_args()
    mode = "stock mark_process_dead" if args.no_fold else "fold_dead_worker (app/exposition.py)"
    print(
        f"churn: {args.workers} workers, MAX_REQUESTS={args.max_requests}, {args.threads} client threads, "
        f"child_exit: {mode}, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = run(args)
    print("\n| recycles | files | dir KiB | scrape median ms | scrape max ms | counts exact |")
    print("|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        exact = "yes" if r["exact"] else "NO"
        print(
            f"| {r['recycles']} | {r['files']} | {r['kib']:,.0f} | {r['median_ms']:.1f} | {r['max_ms']:.1f} | {exact} |"
        )


if __name__ == "__main__":
    main()
