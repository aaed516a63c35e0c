"""Service health: traffic recordings (shared with the dashboard's traffic row), the scrape itself, and symptoms
the SLOs do not cover (other routes, broken clients)."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import JOB, KEEP, NAMESPACE, Alert, Concern, Record, sel
from app.metrics import (
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_TOTAL,
    MODEL_INVALID_REQUESTS_TOTAL,
    UNMATCHED_ROUTE,
)

ROUTE_STATUS = "namespace_job_route_status:http_requests:rate5m"
ROUTE = "namespace_job_route:http_requests:rate5m"
ROUTE_5XX = "namespace_job_route:http_requests_5xx:ratio_rate5m"
ROUTE_LE = "namespace_job_route_le:http_request_duration_seconds_bucket:rate5m"
REASON = "namespace_job_reason:model_invalid_requests:rate5m"
INVALID = "namespace_job:model_invalid_requests:ratio_rate5m"
GATE = f"{t.MIN_REQUESTS_PER_SECOND:g}"

RECORDS = (
    Record(ROUTE_STATUS, f"sum by ({KEEP}, route, status) (rate({sel(HTTP_REQUESTS_TOTAL)}[5m]))"),
    Record(ROUTE, f"sum by ({KEEP}, route) ({ROUTE_STATUS})"),
    # A status series only exists once seen: `or 0 * total` makes "no 5xx yet" a real 0; no traffic: no series.
    Record(
        ROUTE_5XX,
        f'(\n  sum by ({KEEP}, route) ({ROUTE_STATUS}{{status=~"5.."}})\n  or\n  0 * {ROUTE}\n)\n/ ({ROUTE} > 0)',
    ),
    # Buckets summed over pods and methods, `le` kept: fleet-wide quantiles for the p95 alert and the dashboard.
    Record(
        ROUTE_LE,
        f"sum by ({KEEP}, route, le) (\n  rate({sel(HTTP_REQUEST_DURATION_SECONDS + '_bucket')}[5m])\n)",
    ),
    Record(REASON, f"sum by ({KEEP}, reason) (rate({sel(MODEL_INVALID_REQUESTS_TOTAL)}[5m]))"),
    # Every refusal is also an answered /predict request, so this stays within [0, 1].
    Record(INVALID, f'sum by ({KEEP}) ({REASON})\n/ on ({KEEP})\n({ROUTE}{{route="/predict"}} > 0)'),
)

UP = sel("up")

CONCERN = Concern(
    "service",
    "service health",
    (
        *RECORDS,
        # No target at all (ServiceMonitor or Service gone, a selector or release label wrong), or none
        # answering. absent() copies only the selector's equality matchers into its result: naming the
        # namespace there is what gives this branch the `namespace` label Alertmanager routes on.
        Alert(
            "WineClassifierDown",
            (f'absent(up{{job="{JOB}", namespace="{NAMESPACE}"}})', f"sum by ({KEEP}) ({UP}) == 0"),
            "critical",
            "No wine-classifier target is being scraped successfully.",
            f"""Prometheus has had no successful scrape of job {{{{ $labels.job }}}} in {{{{ $labels.namespace }}}}
            for {t.human(t.DOWN_FOR)}: either no target is discovered at all or every discovered pod fails its
            scrape. The model service is down or unobservable; every other wine-classifier alert is blind.""",
            t.DOWN_FOR,
        ),
        Alert(
            "WineClassifierTargetDown",
            (f"{UP} == 0",),
            "warning",
            "Pod {{ $labels.pod }} of {{ $labels.namespace }}/{{ $labels.job }} cannot be scraped.",
            f"""The scrape of {{{{ $labels.instance }}}} (pod {{{{ $labels.pod }}}}) has failed for
            {t.human(t.TARGET_DOWN_FOR)}. Other replicas may still serve traffic, but this pod's metrics are
            missing from every rate and SLO.""",
            t.TARGET_DOWN_FOR,
        ),
        # Any route, not only /predict (the SLO covers that one); the volume gate keeps a single failed request
        # on a quiet route from alerting.
        Alert(
            "WineClassifierHttp5xxRatioHigh",
            (f"{ROUTE_5XX} > {t.ERROR_RATIO:g}\nand on ({KEEP}, route)\n{ROUTE} >= {GATE}",),
            "warning",
            "{{ $labels.route }} of {{ $labels.namespace }}/{{ $labels.job }} answers 5xx to "
            "{{ $value | humanizePercentage }} of requests.",
            f"""{{{{ $value | humanizePercentage }}}} of the requests to {{{{ $labels.route }}}} got a 5xx answer
            over the last 5 minutes (threshold {t.ERROR_RATIO:.0%}), for {t.human(t.ERROR_RATIO_FOR)} now.""",
            t.ERROR_RATIO_FOR,
        ),
        Alert(
            "WineClassifierLatencyP95High",
            (f'histogram_quantile(\n  0.95,\n  {ROUTE_LE}{{route!="{UNMATCHED_ROUTE}"}}\n) > {t.P95_SECONDS:g}',),
            "warning",
            "p95 latency of {{ $labels.route }} on {{ $labels.namespace }}/{{ $labels.job }} is "
            "{{ $value | humanize }}s.",
            f"""95% of the requests to {{{{ $labels.route }}}} over the last 5 minutes took up to
            {{{{ $value | humanize }}}}s (threshold {t.P95_SECONDS:g}s, twice the latency SLO's
            {t.LATENCY_THRESHOLD_SECONDS:g}s), for {t.human(t.P95_FOR)} now.""",
            t.P95_FOR,
        ),
        # Refused bodies are 4xx, invisible to the availability SLO by design.
        Alert(
            "WineClassifierInvalidInputRatioHigh",
            (f'{INVALID} > {t.INVALID_RATIO:g}\nand on ({KEEP})\n{ROUTE}{{route="/predict"}} >= {GATE}',),
            "warning",
            "{{ $value | humanizePercentage }} of /predict requests to {{ $labels.namespace }}/{{ $labels.job }} "
            "are refused as invalid.",
            f"""{{{{ $value | humanizePercentage }}}} of /predict request bodies were refused as invalid over the
            last 5 minutes (threshold {t.INVALID_RATIO:.0%}), for {t.human(t.INVALID_FOR)} now: a client is
            probably sending a broken payload. The dashboard's "Invalid inputs by reason" panel says which check
            fails.""",
            t.INVALID_FOR,
        ),
    ),
)
