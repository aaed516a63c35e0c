"""Titles of the dashboard panels an alert opens on, stated once: the dashboard's rows draw panels under these
titles (dashboard/rows/), and `alerts.links` finds each one's id by its title in the generated dashboard."""

from __future__ import annotations

from alerts import thresholds as t

AVAILABILITY_BURN = "Availability SLO: error budget burn rate"
LATENCY_BURN = "Latency SLO: error budget burn rate"
REQUESTS = "Requests per second by route and status"
IN_FLIGHT = "Requests in flight per pod"
ERROR_RATIO = "5xx error ratio by route (5m)"
LATENCY = "Request latency p50 / p95 / p99 by route"
INVALID_INPUTS = "Invalid inputs by reason"
PSI_NOW = "PSI per feature, now"
PSI_WINDOW = f"Input drift: PSI per feature (last {t.human(t.DRIFT_WINDOW)})"
CLASS_SHARE = "Class share (last hour) vs training prior"
CONFIDENCE = "Mean prediction confidence (last hour)"
MODEL_VERSION = "Model version per pod"
ACCURACY = "Live accuracy (last hour) vs training accuracy"
CANARY_ACCURACY = f"Live accuracy by track (last {t.CANARY_WINDOW})"

# The burn-rate panel of each SLO, by the value of the alerts' `slo` label.
BURN_RATE = {"availability": AVAILABILITY_BURN, "latency": LATENCY_BURN}
