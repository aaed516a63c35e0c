"""The scenarios the alerts are measured on: kinds of traffic, and timelines of them with the alerts each must
(and must not) raise, within a budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from detection.traffic import CLASSES, Traffic

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
