"""Load test row: what locust's users felt next to what the app measured, for the same requests.

Locust's series come from its master (loadtest/exporter.py, names in loadtest/metrics.py), scraped through the
ServiceMonitor of loadtest/ in the same namespace as the app; the app's from its own metrics, on the routes
the locustfile's requests go to. A gap between the two is time outside the app's handler: queues, the
Service, the network, the load generator itself. Dashed: locust. Empty without a load test running in
`$namespace`.
"""

from __future__ import annotations

import re

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import units

from app.metrics import HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL
from dashboard.panels import RATE, queries, selector, timeseries_panel
from loadtest.metrics import (
    LOCUST_FAILURES_TOTAL,
    LOCUST_REQUESTS_TOTAL,
    LOCUST_RESPONSE_TIME_SECONDS,
    LOCUST_USERS,
    LOCUST_WORKERS,
    ROUTE_OF_NAME,
)

TITLE = "Load test"

# The `job` label of the master's series: prometheus-operator names it after the Service the ServiceMonitor
# of loadtest/ selects (tests/manifests checks the two agree).
LOCUST_JOB = "locust-master"
LOCUST_SCOPE = f'namespace="$namespace", job="{LOCUST_JOB}"'
ROUTES = tuple(sorted(set(ROUTE_OF_NAME.values())))
CLIENT = "^locust "
P95 = 'quantile="0.95"'
APP_5XX = 'status=~"5.."'


def _one_of(label: str, values: list[str] | tuple[str, ...]) -> str:
    """`label=~"a|b"`, each value's regexp metacharacters escaped, backslashes doubled for a PromQL string."""
    escaped = (re.sub(r"([][().*+?^$|{}\\])", r"\\\1", v).replace("\\", "\\\\") for v in values)
    return f'{label}=~"{"|".join(escaped)}"'


APP_ROUTES = _one_of("route", ROUTES)


def _locust(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join([LOCUST_SCOPE, *matchers])}}}"


def _names_of(route: str) -> str:
    """A matcher for locust's request names that go to `route` (regexp escaped for a PromQL string)."""
    return _one_of("name", sorted(name for name, to in ROUTE_OF_NAME.items() if to == route))


def _per_route(metric: str, legend: str) -> list[tuple[str, str]]:
    return [(f"sum(rate({_locust(metric, _names_of(route))}{RATE}))", f"{legend} {route}") for route in ROUTES]


def request_rate_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Requests per second: locust sent, the app answered",
        "Solid: the app's count per route, summed over pods. Dashed: locust's requests to the same route "
        "(its invalid requests included, the app answers them on /predict too).",
        units.RequestsPerSecond,
        queries(
            *_per_route(LOCUST_REQUESTS_TOTAL, "locust"),
            (f"sum by (route) (rate({selector(HTTP_REQUESTS_TOTAL, APP_ROUTES)}{RATE}))", "app {{route}}"),
        ),
        dashed=CLIENT,
        legend_table=True,
    )


def failures_timeseries() -> timeseries.Panel:
    app_5xx = f"sum by (route) (rate({selector(HTTP_REQUESTS_TOTAL, APP_ROUTES, APP_5XX)}{RATE}))"
    app_all = f"sum by (route) (rate({selector(HTTP_REQUESTS_TOTAL, APP_ROUTES)}{RATE}))"
    return timeseries_panel(
        "Failures per second: locust's failures, the app's 5xx",
        "Dashed: requests locust counted as failed (an error, a timeout, an unexpected status; an invalid "
        "request answered with the expected 4xx is a success). Solid: 5xx answers the app counted. Failures "
        "locust sees and the app does not happened before the app's handler: connections, the Service, the "
        "network.",
        units.RequestsPerSecond,
        queries(
            *_per_route(LOCUST_FAILURES_TOTAL, "locust"),
            # 0 rather than no data while the app answers without a 5xx.
            (f"{app_5xx} or {app_all} * 0", "app {{route}} 5xx"),
        ),
        dashed=CLIENT,
        legend_table=True,
    )


def p95_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "p95 latency: locust's users, the app's handler",
        "Dashed: locust's p95 over its last 10 s, per request name (valid requests only). Solid: the app's p95 "
        "from its request histogram, per route, summed over pods. The gap is time spent outside the handler.",
        units.Seconds,
        queries(
            (
                f"max by (name) ({_locust(LOCUST_RESPONSE_TIME_SECONDS, _one_of('name', ROUTES), P95)})",
                "locust {{name}}",
            ),
            (
                f"histogram_quantile(0.95, sum by (route, le) "
                f"(rate({selector(HTTP_REQUEST_DURATION_SECONDS + '_bucket', APP_ROUTES)}{RATE})))",
                "app {{route}}",
            ),
        ),
        dashed=CLIENT,
        legend_table=True,
    )


def users_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Locust users and workers",
        "Users running over all workers, and the workers connected to the master.",
        units.Short,
        queries(
            (f"sum({_locust(LOCUST_USERS)})", "users"),
            (f"sum({_locust(LOCUST_WORKERS)})", "workers"),
        ),
    )


PANELS = (request_rate_timeseries, failures_timeseries, p95_timeseries, users_timeseries)
