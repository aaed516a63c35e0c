"""Traffic row: request rate, 5xx ratio, latency and concurrency, summed over pods."""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import units

from alerts import panels, thresholds
from app.metrics import (
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT,
    HTTP_REQUESTS_TOTAL,
    LATENCY_SLO_SECONDS,
    UNMATCHED_ROUTE,
)
from dashboard.panels import RATE, quantiles, queries, selector, timeseries_panel

TITLE = "Traffic"

# Recorded by manifests/prometheusrule-*.yaml.
ROUTE_5XX_RATIO = "namespace_job_route:http_requests_5xx:ratio_rate5m"

# Alert thresholds (alerts/thresholds.py), drawn as dashed lines.
ERROR_RATIO_ALERT = thresholds.ERROR_RATIO
P95_ALERT_SECONDS = thresholds.P95_SECONDS


def requests_per_second_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.REQUESTS,
        "Answered HTTP requests, summed over pods. `unmatched` collects requests for unknown paths.",
        units.RequestsPerSecond,
        queries(
            (
                f"sum by (route, status) (rate({selector(HTTP_REQUESTS_TOTAL)}{RATE}))",
                "{{route}} {{status}}",
            )
        ),
        legend_table=True,
    )


def error_ratio_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.ERROR_RATIO,
        f"Share of answers that were 5xx, per route. Dashed: the {ERROR_RATIO_ALERT:.0%} alert threshold.",
        units.PercentUnit,
        queries((selector(ROUTE_5XX_RATIO), "{{route}}")),
        steps=[("green", None), ("red", ERROR_RATIO_ALERT)],
    )


def latency_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.LATENCY,
        f"From the request histogram, summed over pods. Dashed: the latency SLO threshold "
        f"({LATENCY_SLO_SECONDS}s) and the p95 alert ({P95_ALERT_SECONDS}s).",
        units.Seconds,
        queries(*quantiles(HTTP_REQUEST_DURATION_SECONDS, f'route!="{UNMATCHED_ROUTE}"', group="route")),
        steps=[("green", None), ("orange", LATENCY_SLO_SECONDS), ("red", P95_ALERT_SECONDS)],
        legend_table=True,
    )


def in_flight_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.IN_FLIGHT,
        "Requests being handled right now, summed over each pod's workers.",
        units.Short,
        queries((f"sum by (pod) ({selector(HTTP_REQUESTS_IN_FLIGHT)})", "{{pod}}")),
    )


PANELS = (requests_per_second_timeseries, error_ratio_timeseries, latency_timeseries, in_flight_timeseries)
