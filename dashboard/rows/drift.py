"""Drift row: input drift (PSI per feature against the training distribution) and whether enough rows came
in for the drift alerts to judge."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, timeseries
from grafana_foundation_sdk.models import units

from alerts import panels, thresholds
from alerts.drift import PSI as FEATURE_PSI
from dashboard.panels import bar_gauge_panel, hourly_count_stat, queries, selector, timeseries_panel

TITLE = "Drift"

# Recorded by manifests/prometheusrule-*.yaml.
ROWS_PER_SECOND_1H = "namespace_job:model_predictions:rate1h"

# Alert thresholds (alerts/thresholds.py), drawn as dashed lines or colour steps.
PSI_WARNING, PSI_CRITICAL = thresholds.PSI_MODERATE, thresholds.PSI_MAJOR
PSI_WINDOW = thresholds.human(thresholds.DRIFT_WINDOW)
MODEL_MIN_ROWS = thresholds.MODEL_MIN_ROWS  # rows in the hour

PSI_STEPS = [("green", None), ("orange", PSI_WARNING), ("red", PSI_CRITICAL)]
PSI_HELP = (
    f"Population Stability Index of each input feature over the last {PSI_WINDOW}, against the training "
    f"distribution. Below {PSI_WARNING} stable, {PSI_WARNING}-{PSI_CRITICAL} moderate shift (warning), "
    f"above {PSI_CRITICAL} major shift (critical)."
)


def psi_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.PSI_WINDOW,
        PSI_HELP + " Dashed: the two thresholds.",
        units.NoUnit,
        queries((selector(FEATURE_PSI), "{{feature}}")),
        width=12,
        steps=PSI_STEPS,
        legend_table=True,
    )


def psi_now_bar_gauge() -> bargauge.Panel:
    return bar_gauge_panel(
        panels.PSI_NOW,
        PSI_HELP,
        units.NoUnit,
        queries((f"sort_desc({selector(FEATURE_PSI)})", "{{feature}}")),
        PSI_STEPS,
        width=8,
        maximum=0.5,
    )


def rows_last_hour_stat() -> stat.Panel:
    return hourly_count_stat(
        "Rows in the last hour",
        f"Prediction-drift and confidence alerts need at least {MODEL_MIN_ROWS} rows in the hour (the drift "
        f"alerts {thresholds.DRIFT_MIN_ROWS} values of a feature in {PSI_WINDOW}): fewer, and the estimates "
        "are noise.",
        ROWS_PER_SECOND_1H,
        "rows",
        MODEL_MIN_ROWS,
        width=4,
    )


PANELS = (psi_timeseries, psi_now_bar_gauge, rows_last_hour_stat)
