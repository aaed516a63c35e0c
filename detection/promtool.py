"""`promtool test rules` on each scenario's series: which alerts fired, from which minute to which."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from declarations.promql import metric_names
from detection.cluster import Cluster
from detection.sampling import Pools
from detection.scenarios import CANARY_PODS, POD_IP, STABLE_PODS, Scenario, scenarios
from detection.series import input_series, timeline

# -- promtool -----------------------------------------------------------------------------------------------

FIRING = 'ALERTS{alertstate="firing"} * 0 + time()'
GOT = re.compile(r"^\s*got: (.*)$", re.MULTILINE)
SAMPLE = re.compile(r'\{((?:[^{}"]|"(?:[^"\\]|\\.)*")*)\} ([^,\s]+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def got_samples(output: str) -> list[tuple[dict[str, str], float]]:
    """The samples promtool reports as `got:` for failed expression checks, with their labels."""
    return [
        (dict(LABEL.findall(labels)), float(value))
        for line in GOT.findall(output)
        for labels, value in SAMPLE.findall(line)
    ]


@dataclass
class Result:
    scenario: Scenario
    # labels (as a sorted tuple) -> (first, last) minute at which a check saw the alert firing
    fired: dict[tuple[tuple[str, str], ...], tuple[int, int]]

    def watched(self) -> dict[tuple[tuple[str, str], ...], tuple[int, int]]:
        return {k: v for k, v in self.fired.items() if self.scenario.watched(dict(k))}

    def early(self) -> list[str]:
        """Alerts that fired before the fault began: false alarms of the healthy warm-up."""
        if self.scenario.measure == "silent":
            return [dict(k)["alertname"] for k in self.fired]
        return [dict(k)["alertname"] for k, (first, _) in self.fired.items() if first < self.scenario.onset]

    def detection(self) -> int | None:
        """Minutes to detection (page) or to resolution (resolve); None when it never happened."""
        watched = self.watched()
        if self.scenario.measure == "page":
            after = [first for first, _ in watched.values() if first >= self.scenario.onset]
            return min(after) - self.scenario.onset if after else None
        if self.scenario.measure == "resolve":
            if not watched:
                return None
            last = max(last for _, last in watched.values())
            return None if last >= self.scenario.minutes else last + 1 - self.scenario.recovery
        return None

    def within_budget(self) -> bool:
        if self.early():
            return False
        if self.scenario.measure == "silent":
            return not self.fired
        found = self.detection()
        return found is not None and found <= self.scenario.budget


def promtool_test(
    batch: list[tuple[Scenario, list[dict[str, str]]]], group: dict[str, Any], cluster_: Cluster, workdir: Path
) -> list[Result]:
    """One promtool run of one rule group, for scenarios whose series differ by namespace (the cost of a run
    is mostly per evaluation, not per series, so the long healthy timelines share one). No group reads
    another's recordings, so each can run on its own core."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    directory = Path(tempfile.mkdtemp(dir=workdir, prefix="scenario-"))
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    wanted = wanted_metrics({"groups": [group]}) | {"up"}
    end = f"{max(scenario.minutes for scenario, _ in batch)}m"
    checks = [f"{fn}(({FIRING})[{end}:1m]) / 60" for fn in ("min_over_time", "max_over_time")]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": cluster_.evaluation_interval,
        "tests": [
            {
                "interval": cluster_.scrape_interval,
                "input_series": [s for _, series in batch for s in series if s["series"].split("{")[0] in wanted],
                # Expecting nothing: promtool then lists every alert that did fire, with its labels.
                "promql_expr_test": [{"expr": expr, "eval_time": end, "exp_samples": []} for expr in checks],
            }
        ],
    }
    (directory / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False, width=1 << 20))
    done = subprocess.run(
        [promtool, "test", "rules", "test.yaml"], cwd=directory, capture_output=True, text=True, timeout=1800
    )
    got = got_samples(done.stdout + done.stderr)
    if done.returncode != 0 and not got:
        raise RuntimeError(f"promtool failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    shutil.rmtree(directory, ignore_errors=True)
    first_last: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for labels, value in got:
        key = tuple(sorted(labels.items()))
        first_last.setdefault(key, []).append(round(float(value)))
    namespaces = [_namespace(cluster_, i) for i in range(len(batch))]
    return [
        Result(scenario, {k: (min(v), max(v)) for k, v in first_last.items() if dict(k).get("namespace") == ns})
        for (scenario, _), ns in zip(batch, namespaces, strict=True)
    ]


def scenario_series(
    scenario: Scenario, pools: Pools, rng: np.random.Generator, target: dict[str, str], steps: int, wanted: set[str]
) -> list[dict[str, str]]:
    """The input series of every target of a scenario: one pod, or with a canary the overlay's pods, each a
    target of its own (pod, instance and track as the operator would label them)."""
    if not scenario.canary:
        return input_series(timeline(scenario, pools, rng), pools, target, steps, wanted)
    pods = [(phases, "stable", i) for i, phases in enumerate([scenario.phases] * STABLE_PODS)]
    pods += [(scenario.canary, "canary", STABLE_PODS + i) for i in range(CANARY_PODS)]
    series = []
    for phases, track, index in pods:
        labels = {
            **target,
            "track": track,
            "pod": f"{target['pod']}-{index}",
            "instance": target["instance"].replace(POD_IP, f"{POD_IP[: POD_IP.rindex('.')]}.{20 + index}"),
        }
        one_pod = Scenario(scenario.name, phases, scenario.measure, scenario.budget)
        series += input_series(timeline(one_pod, pools, rng), pools, labels, steps, wanted)
    return series


def _namespace(cluster_: Cluster, index: int) -> str:
    namespace = cluster_.target_labels["namespace"]
    return namespace if index == 0 else f"{namespace}-{index}"


def alerting_only(group: dict[str, Any]) -> dict[str, Any]:
    """The group without the recordings no alert reads (directly or through another recording): they exist for
    the dashboard, and leaving them out changes no alert while sparing promtool their evaluations."""
    needed: set[str] = set()
    kept = []
    for rule in reversed(group["rules"]):
        if "alert" in rule or rule["record"] in needed:
            kept.append(rule)
            needed |= metric_names(rule["expr"])
    return {**group, "rules": kept[::-1]}


def wanted_metrics(rules: dict[str, Any]) -> set[str]:
    return {name for g in rules["groups"] for r in g["rules"] for name in metric_names(r["expr"]) if ":" not in name}


def run(
    pools: Pools, cluster_: Cluster, workdir: Path, seed: int = 1, chosen: Iterable[Scenario] | None = None
) -> list[Result]:
    rng = np.random.default_rng(seed)
    wanted = wanted_metrics(cluster_.rules)
    chosen = list(chosen or scenarios())
    # Every fault scenario alone (it measures alerts of the app's own namespace); the silent ones together.
    batches = [[s] for s in chosen if s.measure != "silent"] + [[s for s in chosen if s.measure == "silent"]]
    jobs = []
    for batch in filter(None, batches):
        jobs.append(
            [
                (s, scenario_series(s, pools, rng, {**cluster_.target_labels, "namespace": ns}, cluster_.steps, wanted))
                for s, ns in ((s, _namespace(cluster_, i)) for i, s in enumerate(batch))
            ]
        )
    # Longest first, so that the long runs start at once and the short ones fill the gaps.
    runs = sorted(
        ((b, g) for b in jobs for g in cluster_.rules["groups"]), key=lambda r: -max(s.minutes for s, _ in r[0])
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        done = [r for results in pool.map(lambda run: promtool_test(*run, cluster_, workdir), runs) for r in results]
    merged: dict[str, dict] = {s.name: {} for s in chosen}
    for result in done:
        merged[result.scenario.name].update(result.fired)
    return [Result(s, merged[s.name]) for s in chosen]
