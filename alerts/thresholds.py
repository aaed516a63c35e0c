"""Every number the alerts compare against, stated once.

The generated rules (manifests/prometheusrule-*.yaml), the dashboard's threshold lines, the threshold table
in docs/runbooks.md and the tests all read them from here. Detection times they give at the cluster's
intervals are measured by `python -m detection.simulate` (docs/detection.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.metrics import LATENCY_SLO_SECONDS
from declarations import durations

# SLOs on /predict over a 30-day budget period.
AVAILABILITY_OBJECTIVE = 0.999
LATENCY_OBJECTIVE = 0.99
# A bucket boundary of the request histogram (app/metrics.py), so the latency SLI is an exact bucket ratio.
LATENCY_THRESHOLD_SECONDS = LATENCY_SLO_SECONDS


@dataclass(frozen=True)
class BurnWindow:
    """One line of the SRE workbook's multi-window burn-rate table: both windows above `factor` alert."""

    long: str
    short: str
    factor: float


# Page: 2% of the 30-day budget in 1h, or 5% in 6h. Ticket: 10% in 3 days. The short window (1/12 of the long
# one) is the confirmation that the burn is still happening, so no `for:` is needed and the alert resolves
# about one short window after the fix.
PAGE_BURNS = (BurnWindow("1h", "5m", 14.4), BurnWindow("6h", "30m", 6.0))
TICKET_BURNS = (BurnWindow("3d", "6h", 1.0),)
# Windows computed from raw counters (fresh, exact); longer ones are sums of recorded 5m rates (cheap).
RAW_WINDOWS = ("5m", "30m", "1h", "6h")
RECORDED_WINDOWS = ("3d", "30d")
BUDGET_WINDOW = "30d"

# Service symptoms outside the SLO.
DOWN_FOR = "5m"
TARGET_DOWN_FOR = "10m"
ERROR_RATIO = 0.05
P95_SECONDS = 2 * LATENCY_THRESHOLD_SECONDS
INVALID_RATIO = 0.1
MIN_REQUESTS_PER_SECOND = 0.1  # volume gate of the ratio alerts: 6 requests a minute
ERROR_RATIO_FOR = "10m"
P95_FOR = "10m"
INVALID_FOR = "15m"

# Input drift: Population Stability Index per feature over DRIFT_WINDOW. Rules of thumb: < 0.1 stable,
# 0.1-0.25 moderate, > 0.25 major. PSI of k bins between two samples of one distribution is biased upwards by
# about (k - 1) / rows, so the alerts need DRIFT_MIN_ROWS values of the feature in the window (5 bins: ~0.008).
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
DRIFT_WINDOW = "10m"
DRIFT_MIN_ROWS = 500
DRIFT_FOR = "5m"
# Healthy traffic at 1 req/s brushes the moderate line for a few minutes now and then (measured: a 10-minute
# PSI peaked at 0.11 in a simulated day); only a shift that stays above it for this long is one.
DRIFT_MODERATE_FOR = "15m"
# A quiet service (~0.1 req/s: 60 values of a feature in 10 minutes) never reaches DRIFT_MIN_ROWS in
# DRIFT_WINDOW. The PSI the major-drift alert judges is then the one over DRIFT_QUIET_WINDOW, gated on the same
# number of values (720 at 0.1 req/s). Where the short window has its values, it decides. The moderate warning
# keeps to the short window: a 2-hour PSI just above PSI_MODERATE outlasts DRIFT_MODERATE_FOR by chance
# (measured: once in 3 simulated quiet days).
DRIFT_QUIET_WINDOW = "2h"

# A broken feature (a unit error, a constant from an upstream bug) puts nearly every value into one bin, an
# outer one when it leaves the training range. A direct test on a short window pages before the PSI would.
BROKEN_BIN_SHARE = 0.9
BROKEN_WINDOW = "2m"
BROKEN_MIN_ROWS = 60
# Where BROKEN_WINDOW holds fewer than BROKEN_MIN_ROWS values (a quiet service: ~12 at 0.1 req/s), the same
# share over this window, gated on the same count (~120 values at 0.1 req/s). With no training bin holding
# half the values, 90% of 60 healthy values in one bin has a probability below 1e-10.
BROKEN_QUIET_WINDOW = "20m"

# Model outputs over an hour, gated on volume like the drift alerts.
MODEL_WINDOW = "1h"
MODEL_MIN_ROWS = 1000
PREDICTION_SHARE_DRIFT = 0.15
CONFIDENCE_MIN = 0.6
MODEL_FOR = "30m"
VERSION_MISMATCH_FOR = "15m"

# Live accuracy from ground truth (POST /feedback) over ACCURACY_WINDOW. At 200 items an accuracy of 0.9 has
# a standard error of about 0.02, so a drop of ACCURACY_DROP below the training accuracy is not chance.
ACCURACY_WINDOW = "1h"
ACCURACY_DROP = 0.1
ACCURACY_MIN_FEEDBACK = 200
ACCURACY_FOR = "5m"


# Canary against stable (pods labelled `track`, see canary/), each over CANARY_WINDOW and only once the canary
# has the volume to be judged: at CANARY_MIN_FEEDBACK items an accuracy of 0.9 has a standard error of 0.03,
# a third of CANARY_ACCURACY_DROP.
CANARY_WINDOW = "30m"
CANARY_MIN_REQUESTS = 300
CANARY_MIN_ROWS = 500
CANARY_MIN_FEEDBACK = 100
CANARY_ERROR_MARGIN = 0.01  # 5xx ratio above stable's
CANARY_P95_FACTOR = 1.5  # p95 latency over stable's
CANARY_P95_FLOOR_SECONDS = 0.05  # and above this, so that a few ms of noise on a fast service is not a regression
CANARY_CONFIDENCE_DROP = 0.1  # mean confidence below stable's
CANARY_CLASS_SHARE_DIFF = 0.15  # largest difference of one class's share
CANARY_ACCURACY_DROP = 0.1  # live accuracy below stable's
CANARY_FOR = "10m"


def seconds(duration: str) -> int:
    """A window in whole seconds, as the rules multiply rates by it."""
    return int(durations.seconds(duration))


def human(duration: str) -> str:
    """`1h` -> "hour", `15m` -> "15 minutes", for annotations: "over the last hour", "for 15 minutes"."""
    count, unit = int(duration[:-1]), {"s": "second", "m": "minute", "h": "hour", "d": "day"}[duration[-1]]
    return unit if count == 1 else f"{count} {unit}s"
