"""SLO row: error budget burn rate of each SLO over the alerting windows, and the budget left."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import units

from alerts import panels, thresholds
from dashboard.panels import MULTIPLE_UNIT, queries, selector, stat_panel, timeseries_panel

TITLE = "SLO"

# Recorded by manifests/prometheusrule-*.yaml.
BURN_RATE = "slo:burn_rate:ratio_rate{window}"
BURN_WINDOWS = ("5m", "30m", "1h", "6h", "3d")
BUDGET_REMAINING = "slo:error_budget_remaining:ratio_rate30d"

# Alert thresholds (alerts/thresholds.py), drawn as dashed lines: 1 over 3d and 6h opens a ticket.
(TICKET_BURN,) = (burn.factor for burn in thresholds.TICKET_BURNS)
FAST_BURN, MEDIUM_BURN = (burn.factor for burn in thresholds.PAGE_BURNS)


def _burn_rate(slo: str) -> timeseries.Panel:
    return timeseries_panel(
        panels.BURN_RATE[slo],
        "Burn rate per window: 1 spends the 30-day budget in exactly 30 days. Dashed: the alert thresholds "
        f"({TICKET_BURN} over 3d and 6h opens a ticket; {MEDIUM_BURN} over 6h and 30m, or {FAST_BURN} over 1h "
        "and 5m, pages).",
        MULTIPLE_UNIT,
        queries(*((selector(BURN_RATE.format(window=window), f'slo="{slo}"'), window) for window in BURN_WINDOWS)),
        width=9,
        steps=[("green", None), ("yellow", TICKET_BURN), ("orange", MEDIUM_BURN), ("red", FAST_BURN)],
        legend_table=True,
    )


def availability_burn_rate_timeseries() -> timeseries.Panel:
    return _burn_rate("availability")


def latency_burn_rate_timeseries() -> timeseries.Panel:
    return _burn_rate("latency")


def budget_remaining_stat() -> stat.Panel:
    return stat_panel(
        "Error budget remaining (30 days)",
        "Share of each SLO's 30-day error budget not yet spent; negative means overspent. Covers at most "
        "what Prometheus retains.",
        units.PercentUnit,
        queries((selector(BUDGET_REMAINING), "{{slo}}")),
        [("red", None), ("orange", 0), ("green", 0.25)],
        width=6,
        decimals=1,
    )


PANELS = (availability_burn_rate_timeseries, latency_burn_rate_timeseries, budget_remaining_stat)
