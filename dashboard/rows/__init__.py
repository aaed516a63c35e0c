"""The dashboard's rows, top to bottom: one module per row, one function per panel.

Metric names come from `app.metrics` (exported by the service) or `loadtest.metrics` (exported by the locust
master), or are the names recorded by manifests/prometheusrule.yaml, declared at the top of the module that
draws them; tests/dashboard checks that every name used is one of these. Thresholds drawn on panels are the
ones the alerts use, declared the same way, so a graph crossing a dashed line is an alert about to fire.
"""

from __future__ import annotations

from dashboard.rows import alerts, canary, drift, loadtest, model, slo, traffic

# Each module's TITLE heads a row; its PANELS follow it, left to right.
ROWS = (traffic, slo, model, drift, canary, alerts, loadtest)
