"""What one scrape costs the gunicorn master, against what prometheus_client's own merge costs on the same files.

    python -m benchmarks.exposition [--features 500] [--rounds 6] [--scrapes 20]

THE gunicorn command serves a model of F features (drift bins on at most DRIFT_FEATURES of them) under the light
traffic of `benchmarks.scale`. Each round alternates two measures on the pod's live multiprocess files:
- **served**: `--scrapes` GETs of /metrics as Prometheus sends them (OpenMetrics preferred, gzip, a new
  connection each), and the master's CPU over them from /proc (the master serves nothing else);
- **library**: in this process, the exposition as the master built it with prometheus_client alone
  (`MultiProcessCollector.merge`, the OpenMetrics encoder Prometheus's Accept header picks, gzip at level 9),
  its CPU time per scrape. It leaves out the HTTP handling the served figure includes.

Prints each round, then the medians and their ratio, and the load before and after each round.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.exposition import generate_latest

from app.train import DRIFT_FEATURES, train, write_artefact
from benchmarks.scale import dataset, load, scrape_cost, start_pods


class _Files:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self):
        files = [str(p) for p in self.directory.glob("*.db") if p.stat().st_size]
        return MultiProcessCollector.merge(files, accumulate=True)


def library_cpu(directory: Path, scrapes: int) -> float:
    """CPU seconds per scrape of prometheus_client's merge, OpenMetrics encoding and gzip, in this process."""
    files = _Files(directory)
    started = time.process_time()
    for _ in range(scrapes):
        gzip.compress(generate_latest(files))
    return (time.process_time() - started) / scrapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args(argv)
    data = dataset(args.features)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        write_artefact(*train(dataset=data, drift_features=DRIFT_FEATURES), workdir / "model")
        (server,) = start_pods(stack, workdir, workdir / "model", 1, data)
        time.sleep(5)  # the traffic reaches both workers and every series exists
        series = sum(1 for line in server.scrape().splitlines() if line and not line.startswith("#"))
        print(f"{args.features} features, {series} series; {os.cpu_count()} CPUs")
        served, library = [], []
        for round_ in range(args.rounds):
            before = load()
            wall, cpu = scrape_cost(server, args.scrapes)
            lib = library_cpu(server.multiproc, args.scrapes)
            served.append(cpu)
            library.append(lib)
            print(
                f"round {round_ + 1}: served {cpu * 1000:.1f} ms CPU of the master per scrape "
                f"(GET median {wall * 1000:.1f} ms); library {lib * 1000:.1f} ms; load {before} -> {load()}"
            )
        mid_served, mid_library = statistics.median(served), statistics.median(library)
        print(
            f"median: served {mid_served * 1000:.1f} ms, library {mid_library * 1000:.1f} ms: "
            f"{mid_served / mid_library:.2f}x the library's CPU per scrape"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
