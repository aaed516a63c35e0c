"""How fast the alerts fire, measured: `python -m detection.simulate [--write]` prints (and writes to
docs/detection.md) the detection table.

1. Minutes of each kind of traffic are sampled from the real service (THE gunicorn command): healthy traffic
   at 1 and at 0.1 requests/s, a shifted feature, a feature arriving as 0, a unit error (x1000), wrong ground
   truth for one class, and a full outage (a service without its model answers every /predict with a 5xx).
2. Each scenario is a timeline of such minutes, each drawn at random from its kind's sampled minutes (a
   bootstrap: real minutes, never the same minute repeated in a row by construction). The timeline becomes
   promtool `input_series` at the ServiceMonitor's scrape interval, with the labels the operator gives the
   target; a series exists from the first scrape that would have seen it; "no target" is a staleness marker.
3. `promtool test rules` evaluates the rules taken from the rendered manifests at the chart's evaluation
   interval, and reads ALERTS{alertstate="firing"} every minute (a 1m subquery): the first and last minute
   each alert fired, with its full label set.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.train import DRIFT_FEATURES
from declarations import chart
from declarations.paths import ROOT
from detection.cluster import Cluster, cluster
from detection.promtool import Result, run
from detection.sampling import sample_pools
from detection.scenarios import FEATURE, Scenario, outside_scenarios, scenarios

# What the detection tests use, from the modules that do each step.
__all__ = ["Cluster", "Result", "Scenario", "cluster", "main", "run", "sample_pools", "scenarios", "table"]

DOC = ROOT / "docs" / "detection.md"


# -- the table ----------------------------------------------------------------------------------------------


def _alerts(result: Result) -> str:
    if not result.fired:
        return "none"
    by_name: dict[str, tuple[int, int]] = {}
    for key, (first, last) in result.fired.items():
        name = dict(key)["alertname"]
        old = by_name.get(name, (first, last))
        by_name[name] = (min(old[0], first), max(old[1], last))
    origin = result.scenario.onset if result.scenario.measure != "silent" else 0
    return ", ".join(
        f"{n} ({a - origin:+d}..{b - origin:+d})" for n, (a, b) in sorted(by_name.items(), key=lambda x: x[1])
    )


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | measured | budget | within | alerts fired (minutes from onset, first..last) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = r.scenario
        found = r.detection()
        if s.measure == "silent":
            measured, budget = f"{len(r.fired)} alerts", "0 alerts"
        elif s.measure == "page":
            measured = f"{s.watched_text} after {found} min" if found is not None else f"no {s.watched_text}"
            budget = f"<= {s.budget} min"
        else:
            measured = f"resolved {found} min after recovery" if found is not None else "never resolved"
            budget = f"<= {s.budget} min"
        lines.append(f"| {s.name} | {measured} | {budget} | {'yes' if r.within_budget() else 'NO'} | {_alerts(r)} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown CPU",
    )  # fmt: skip
    promtool = subprocess.run(["promtool", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; {promtool}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detection.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"also write the table to {DOC.relative_to(ROOT)}")
    parser.add_argument("--seed", type=int, default=1, help="seed of the row and minute draws")
    parser.add_argument(
        "--drift-features",
        type=int,
        default=DRIFT_FEATURES,
        help="train the model with drift bins on only this many features: with 3, the drifted feature is outside "
        "the set, and the table shows what still catches it (docs/runbooks.md)",
    )
    args = parser.parse_args(argv)
    if args.write and args.drift_features != DRIFT_FEATURES:
        parser.error("--write records the default model's table: leave --drift-features out")
    from app.train import train, write_artefact

    with tempfile.TemporaryDirectory(prefix="alerts-simulate-") as tmp:
        workdir = Path(tmp)
        metadata = write_artefact(*train(drift_features=args.drift_features), workdir / "model")
        monitored = [f["name"] for f in metadata["reference"]["features"]]
        if FEATURE not in monitored:
            print(f"{FEATURE} has no drift bins: the model monitors {', '.join(monitored)}")
        cluster_ = cluster()
        started = time.monotonic()
        pools = sample_pools(workdir / "model", workdir / "servers", args.seed)
        sampled = time.monotonic()
        chosen = outside_scenarios() if FEATURE not in monitored else None
        results = run(pools, cluster_, workdir, args.seed, chosen)
        took = f"sampling {sampled - started:.0f} s, promtool {time.monotonic() - sampled:.0f} s (load {_load()})"
    text = table(results)
    print(f"scrape interval {cluster_.scrape_interval} (ServiceMonitor), evaluation interval "
          f"{cluster_.evaluation_interval} ({chart.source()}); target labels {cluster_.target_labels}\n")  # fmt: skip
    print(text)
    print(f"\n{took}")
    if args.write:
        _write_doc(text, cluster_, took)
    return 0 if all(r.within_budget() for r in results) else 1


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _write_doc(text: str, cluster_: Cluster, took: str) -> None:
    current = DOC.read_text()
    start, end = "<!-- table: written by `python -m detection.simulate --write` -->", "<!-- end of table -->"
    body = (
        f"{start}\nMeasured on {machine()}; scrape interval {cluster_.scrape_interval}, evaluation interval "
        f"{cluster_.evaluation_interval}; {took}.\n\n{text}\n{end}"
    )
    DOC.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, current, flags=re.DOTALL))


if __name__ == "__main__":
    sys.exit(main())
