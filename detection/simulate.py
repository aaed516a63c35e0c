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
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.train import DRIFT_FEATURES
from dashboard.promql import metric_names
from declarations import chart
from declarations.durations import seconds
from declarations.manifests import Obj, one, render, rule_groups
from declarations.paths import ROOT
from declarations.scrape import discovered_labels
from detection.traffic import CLASSES, Sample, SeriesKey, Traffic, gauges, sample_minutes

DOC = ROOT / "docs" / "detection.md"
FEATURE = "alcohol"
POD_IP = "10.244.0.17"

QUIET_RATE = 0.1
HEALTHY = Traffic("healthy, 1 req/s")
QUIET = Traffic("healthy, 0.1 req/s", rate=QUIET_RATE)
# The canary overlay's split: the Service spreads connections evenly over the pods of both Deployments.
STABLE_PODS, CANARY_PODS = 2, 1
POD_RATE = 1.0 / (STABLE_PODS + CANARY_PODS)
POD_HEALTHY = Traffic(f"healthy, {POD_RATE:.2g} req/s (one pod of {STABLE_PODS + CANARY_PODS})", rate=POD_RATE)
# The worse canary: the training command's decision stump (held-out accuracy 0.6, as in tests/e2e/test_canary.py).
CANARY_WORSE = Traffic(f"a worse model (--estimator stump), {POD_RATE:.2g} req/s", rate=POD_RATE, estimator="stump")
KINDS = (
    HEALTHY,
    QUIET,
    Traffic("every /predict answered 5xx", model=False),
    Traffic(f"{FEATURE} +1 standard deviation", feature=FEATURE, alter="shift"),
    Traffic(f"{FEATURE} = 0 in every row", feature=FEATURE, alter="zero"),
    Traffic(f"{FEATURE} x1000", feature=FEATURE, alter="x1000"),
    Traffic(f"feedback reports {CLASSES[1]} as another class (30% feedback)", mislabelled=CLASSES[1]),
    Traffic(f"{FEATURE} +1 standard deviation, 0.1 req/s", rate=QUIET_RATE, feature=FEATURE, alter="shift"),
    Traffic(f"{FEATURE} = 0 in every row, 0.1 req/s", rate=QUIET_RATE, feature=FEATURE, alter="zero"),
    Traffic(f"{FEATURE} x1000, 0.1 req/s", rate=QUIET_RATE, feature=FEATURE, alter="x1000"),
    POD_HEALTHY,
    CANARY_WORSE,
)
# Sampled minutes per kind. Healthy minutes fill most of every timeline, hence more of them; a quiet minute
# holds ~6 requests, so its kinds get as many minutes for the same variety of rows.
POOL = {HEALTHY: 30, QUIET: 30, POD_HEALTHY: 30, **{kind: 30 for kind in KINDS[7:10]}}
POOL_DEFAULT = 8
NO_TARGET = None  # a timeline minute in which Prometheus discovers no target


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[tuple[Traffic | None, int], ...]
    # "page": minutes from the fault's onset to the first firing of a watched alert; "resolve": minutes from
    # the end of the fault to the first minute no watched alert fires; "silent": no alert at all.
    measure: str
    budget: int
    watched: Callable[[dict[str, str]], bool] = lambda labels: True
    watched_text: str = "any alert"
    # With a canary: `phases` is each of STABLE_PODS stable pods' traffic, `canary` the canary pod's.
    canary: tuple[tuple[Traffic | None, int], ...] = ()

    @property
    def minutes(self) -> int:
        return sum(m for _, m in self.phases)

    @property
    def onset(self) -> int:
        return (self.canary or self.phases)[0][1]

    @property
    def recovery(self) -> int:
        return self.phases[0][1] + self.phases[1][1]


def _critical(labels: dict[str, str]) -> bool:
    return labels.get("severity") == "critical"


def _named(*names: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels["alertname"] in names


def scenarios() -> list[Scenario]:
    outage, shift, zero, x1000, concept, quiet_shift, quiet_zero, quiet_x1000 = KINDS[2:10]
    return [
        Scenario("full outage: every /predict answered 5xx", ((HEALTHY, 60), (outage, 30), (HEALTHY, 45)),
                 "page", 2, _critical, "a critical alert"),
        Scenario("recovery after a 30 min outage: the page resolves", ((HEALTHY, 60), (outage, 30), (HEALTHY, 45)),
                 "resolve", 35, _critical, "every critical alert"),
        Scenario(f"one feature shifted by 1 standard deviation ({FEATURE})", ((HEALTHY, 60), (shift, 45)),
                 "page", 15, _named("WineClassifierInputDriftModerate", "WineClassifierInputDriftHigh"),
                 "a drift alert"),
        Scenario(f"one feature arriving as 0 in every row ({FEATURE})", ((HEALTHY, 30), (zero, 20)),
                 "page", 5, _critical, "a critical alert"),
        Scenario(f"unit error: one feature x1000 ({FEATURE})", ((HEALTHY, 30), (x1000, 20)),
                 "page", 5, _critical, "a critical alert"),
        Scenario(f"wrong ground truth for {CLASSES[1]}, 30% feedback", ((HEALTHY, 75), (concept, 45)),
                 "page", 30, _named("WineClassifierAccuracyLow"), "WineClassifierAccuracyLow"),
        Scenario("no target discovered at all", ((HEALTHY, 20), (NO_TARGET, 15)),
                 "page", 7, _named("WineClassifierDown"), "WineClassifierDown"),
        Scenario(f"quiet service (~0.1 req/s): one feature arriving as 0 ({FEATURE})",
                 ((QUIET, 150), (quiet_zero, 40)), "page", 30, _critical, "a critical alert"),
        Scenario(f"quiet service (~0.1 req/s): unit error, one feature x1000 ({FEATURE})",
                 ((QUIET, 150), (quiet_x1000, 40)), "page", 30, _critical, "a critical alert"),
        Scenario(f"quiet service (~0.1 req/s): one feature shifted by 1 standard deviation ({FEATURE})",
                 ((QUIET, 150), (quiet_shift, 150)), "page", 120,
                 _named("WineClassifierInputDriftModerate", "WineClassifierInputDriftHigh"), "a drift alert"),
        Scenario(f"canary ({CANARY_PODS} pod next to {STABLE_PODS} stable, 1 req/s in all) turns worse: "
                 "--estimator stump", ((POD_HEALTHY, 105),), "page", 20, _named("WineClassifierCanaryWorse"),
                 "WineClassifierCanaryWorse", canary=((POD_HEALTHY, 60), (CANARY_WORSE, 45))),
        Scenario("3 days of healthy traffic, ~1 req/s", ((HEALTHY, 3 * 1440),), "silent", 0),
        Scenario("3 days of healthy traffic, ~0.1 req/s (a quiet night)", ((QUIET, 3 * 1440),), "silent", 0),
    ]  # fmt: skip


# What still catches a shift in a feature without drift bins (`--drift-features 3`: alcohol, the 4th most weighted
# wine feature, is then outside the set): only alerts on the model's answers can.
ANSWERS = ("WineClassifierPredictionDrift", "WineClassifierConfidenceLow", "WineClassifierAccuracyLow")


def outside_scenarios() -> list[Scenario]:
    shift, zero, x1000 = KINDS[3:6]
    return [
        Scenario(f"{kind.name}, {FEATURE} without drift bins", ((HEALTHY, 60), (kind, 150)), "page", 90,
                 _named(*ANSWERS), "an alert on the answers")
        for kind in (shift, zero, x1000)
    ]  # fmt: skip


# -- the cluster's intervals and target labels, from the declarations ---------------------------------------


@dataclass(frozen=True)
class Cluster:
    scrape_interval: str
    evaluation_interval: str
    target_labels: dict[str, str]
    rules: dict[str, Any]

    @property
    def steps(self) -> int:
        """Scrapes per minute."""
        steps = 60 / seconds(self.scrape_interval)
        if steps != int(steps):
            raise ValueError(f"scrape interval {self.scrape_interval} does not divide a minute")
        return int(steps)


def cluster(objects: list[Obj] | None = None) -> Cluster:
    """The intervals and target labels of the app in a cluster: the ServiceMonitor's endpoint and the Prometheus
    object the chart renders (declarations.chart: Helm's render when the chart is available, else the values)."""
    objects = objects if objects is not None else render()
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    prometheus = chart.prometheus()
    default_scrape, evaluation = chart.intervals(prometheus)
    # Prometheus falls back to its own scrapeInterval where the ServiceMonitor sets none.
    scrape = endpoint.get("interval") or default_scrape
    return Cluster(scrape, evaluation, target_labels(objects, prometheus), rule_groups(objects))


def target_labels(objects: list[Obj], prometheus: Obj | None = None) -> dict[str, str]:
    """The labels the operator's relabelling gives the app's first target in a cluster, evaluated by Prometheus
    (promtool) on the scrape job the local stack runs, at a pod IP of the cluster's kind."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    spec = (prometheus or chart.prometheus()).get("spec") or {}
    with tempfile.TemporaryDirectory(prefix="target-labels-") as tmp:
        found = discovered_labels(
            objects, Path(tmp), promtool, host=POD_IP, pod_target_labels=spec.get("podTargetLabels") or ()
        )
    if not found:
        raise ValueError("the operator's relabelling drops the app's target")
    return found[0]


# -- sampling the real service ------------------------------------------------------------------------------


@dataclass
class Pools:
    """Sampled minutes per kind of traffic, and the series state of a fresh service."""

    start: Sample
    gauges: set[str]
    minutes: dict[Traffic, list[Sample]] = field(default_factory=dict)


# Kinds sampled one after the other on one service; lanes run side by side, each on its own service, so that
# one lane's wait for the input-bin flush overlaps another's requests.
LANES = ((HEALTHY, POD_HEALTHY), (QUIET, KINDS[6], *KINDS[7:10]), KINDS[3:6], (KINDS[2],), (CANARY_WORSE,))


def sample_pools(model_dir: Path, workdir: Path, seed: int = 1) -> Pools:
    from app.train import train, write_artefact
    from harness.server import start_server

    empty = workdir / "no-model"
    empty.mkdir(parents=True, exist_ok=True)
    assert {kind for lane in LANES for kind in lane} == set(KINDS)
    assert all(len({(k.model, k.estimator) for k in lane}) == 1 for lane in LANES), "one model per lane"
    models = {"": model_dir}
    for estimator in {k.estimator for k in KINDS} - {""}:
        models[estimator] = workdir / f"model-{estimator}"
        write_artefact(*train(estimator=estimator), models[estimator])

    def lane(index: int) -> tuple[Sample, set[str], dict[Traffic, list[Sample]]]:
        kinds = LANES[index]
        directory = workdir / f"lane{index}"
        directory.mkdir(parents=True, exist_ok=True)
        server = start_server(directory, models[kinds[0].estimator] if kinds[0].model else empty, workers=2)
        try:
            rng = np.random.default_rng([seed, index])
            first = gauges(server.metrics)
            start: Sample = {}
            minutes = {}
            for kind in kinds:
                begin, minutes[kind] = sample_minutes(
                    server.app, server.metrics, kind, POOL.get(kind, POOL_DEFAULT), rng
                )
                start = start or begin
            return start, first, minutes
        finally:
            server.stop(signal.SIGKILL, timeout=5)

    with ThreadPoolExecutor(max_workers=len(LANES)) as pool:
        lanes = list(pool.map(lane, range(len(LANES))))
    pools = Pools(start=lanes[0][0], gauges=lanes[0][1])
    for _, _, minutes in lanes:
        pools.minutes.update(minutes)
    return pools


# -- timelines -> promtool input series ---------------------------------------------------------------------


def timeline(scenario: Scenario, pools: Pools, rng: np.random.Generator) -> list[Sample | None]:
    out: list[Sample | None] = []
    for kind, minutes in scenario.phases:
        if kind is NO_TARGET:
            out.extend([None] * minutes)
        else:
            pool = pools.minutes[kind]
            out.extend(pool[i] for i in rng.integers(0, len(pool), minutes))
    return out


def _number(value: float) -> str:
    return f"{value:.12g}"


class _Values:
    """A promtool `values` string, runs of equal steps folded into `a+bxn`."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self._run: tuple[float, float, int] | None = None  # first value, step, samples
        self._missing = 0

    def _flush(self) -> None:
        if self._missing:
            self.tokens.append("_" if self._missing == 1 else f"_x{self._missing}")
            self._missing = 0
        if self._run:
            first, step, count = self._run
            self.tokens.append(
                f"{_number(first)}+{_number(step)}x{count - 1}" if step else f"{_number(first)}x{count - 1}"
            )
            self._run = None

    def add(self, first: float, step: float, count: int) -> None:
        if self._run and self._run[1] == step and math.isclose(self._run[0] + self._run[1] * self._run[2], first):
            self._run = (self._run[0], step, self._run[2] + count)
            return
        self._flush()
        self._run = (first, step, count)

    def missing(self, count: int) -> None:
        if self._run:
            self._flush()
        self._missing += count

    def stale(self) -> None:
        self._flush()
        self.tokens.append("stale")

    def text(self) -> str:
        self._flush()
        return " ".join(self.tokens)


def _series_name(key: SeriesKey, target: dict[str, str]) -> str:
    name, labels = key
    # Target labels win over exposed ones, as with the operator's default honor_labels: false.
    merged = {**dict(labels), **target}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(merged.items())) + "}"


def input_series(
    minutes: list[Sample | None], pools: Pools, target: dict[str, str], steps: int, wanted: set[str]
) -> list[dict[str, str]]:
    keys = {k for k in pools.start if k[0] in wanted}
    keys |= {k for m in minutes if m for k in m if k[0] in wanted}
    series = [{"series": _series_name(("up", ()), target), "values": _up(minutes, steps)}]
    for key in sorted(keys):
        values = _Values()
        gauge = key[0] in pools.gauges
        value = pools.start.get(key)
        if gauge and value is None:
            continue  # a gauge of the model-less service only
        stale = False
        for minute in minutes:
            if minute is None:
                if value is not None and not stale:
                    values.stale()
                    values.missing(steps - 1)
                else:
                    values.missing(steps)
                stale = True
                continue
            if stale:
                raise ValueError("a target that reappears is not modelled")
            if gauge:
                values.add(value, 0.0, steps)
                continue
            increment = minute.get(key, 0.0)
            step = increment / steps
            if value is None:
                if increment <= 0:
                    values.missing(steps)
                    continue
                # Created during this minute: first seen by the scrape after its creation.
                values.missing(1)
                values.add(step, step, steps - 1)
                value = increment
                continue
            values.add(value, step, steps)
            value += increment
        series.append({"series": _series_name(key, target), "values": values.text()})
    return series


def _up(minutes: list[Sample | None], steps: int) -> str:
    values = _Values()
    for i, minute in enumerate(minutes):
        if minute is None:
            if i and minutes[i - 1] is not None:
                values.stale()
                values.missing(steps - 1)
            else:
                values.missing(steps)
        else:
            values.add(1.0, 0.0, steps)
    return values.text()


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
