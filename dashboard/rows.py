"""What the dashboard shows, row by row: traffic, SLO, model (with live quality from feedback), drift, alerts.

Metric names come from `app.metrics` (exported by the service) or are the names recorded by
manifests/prometheusrule-*.yaml (the `a:b:c` names below); tests/dashboard checks that every name used here
is one or the other. Thresholds drawn on panels are the alerts' own, read from alerts/thresholds.py, so a graph
crossing a dashed line is an alert about to fire.
"""

from __future__ import annotations

from typing import Any

from alerts import thresholds
from alerts.drift import PSI as FEATURE_PSI
from app.metrics import (
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT,
    HTTP_REQUESTS_TOTAL,
    LATENCY_SLO_SECONDS,
    MODEL_BATCH_ROWS,
    MODEL_FEEDBACK_TOTAL,
    MODEL_INFERENCE_DURATION_SECONDS,
    MODEL_INFO,
    MODEL_INVALID_REQUESTS_TOTAL,
    MODEL_PREDICTION_CONFIDENCE,
    MODEL_PREDICTIONS_TOTAL,
    MODEL_REFERENCE_CLASS_RATIO,
    UNMATCHED_ROUTE,
)
from dashboard.panels import (
    bar_gauge_panel,
    dashed_series,
    heatmap_panel,
    matrix_panel,
    queries,
    selector,
    stat_panel,
    table_panel,
    timeseries_panel,
)

# Recorded by manifests/prometheusrule-*.yaml.
ROUTE_5XX_RATIO = "namespace_job_route:http_requests_5xx:ratio_rate5m"
BURN_RATE = "slo:burn_rate:ratio_rate{window}"
BURN_WINDOWS = ("5m", "30m", "1h", "6h", "3d")
BUDGET_REMAINING = "slo:error_budget_remaining:ratio_rate30d"
CLASS_SHARE = "namespace_job_class:model_predictions:ratio_rate1h"
MEAN_CONFIDENCE = "namespace_job:model_prediction_confidence:mean1h"
ROWS_PER_SECOND_1H = "namespace_job:model_predictions:rate1h"
LIVE_ACCURACY = "namespace_job:model_accuracy:ratio_rate1h"
TRAINING_ACCURACY = "namespace_job:model_training_accuracy:max"
RECALL = "namespace_job_actual:model_recall:ratio_rate1h"
FEEDBACK_PER_SECOND_5M = "namespace_job:model_feedback:rate5m"
FEEDBACK_PER_SECOND_1H = "namespace_job:model_feedback:rate1h"

# Alert thresholds, drawn on the panels that show the same quantity.
ERROR_RATIO_ALERT = thresholds.ERROR_RATIO
P95_ALERT_SECONDS = thresholds.P95_SECONDS
PSI_WARNING, PSI_CRITICAL = thresholds.PSI_MODERATE, thresholds.PSI_MAJOR
PSI_WINDOW = thresholds.human(thresholds.DRIFT_WINDOW)
CONFIDENCE_ALERT = thresholds.CONFIDENCE_MIN
MODEL_MIN_ROWS = thresholds.MODEL_MIN_ROWS  # rows in the hour
ACCURACY_ALERT_DROP = thresholds.ACCURACY_DROP  # below the training accuracy
ACCURACY_MIN_FEEDBACK = thresholds.ACCURACY_MIN_FEEDBACK  # items in the hour
FAST_BURN, MEDIUM_BURN = (burn.factor for burn in thresholds.PAGE_BURNS)

RATE = "[$__rate_interval]"
BURN_UNIT = "suffix:x"

Panel = Any  # an SDK panel builder


def _quantiles(metric: str, *matchers: str, group: str = "") -> list[tuple[str, str]]:
    """p50, p95, p99 of histogram `metric` over all pods, per value of label `group` if given."""
    by = f"{group}, le" if group else "le"
    legend = f" {{{{{group}}}}}" if group else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({by}) (rate({selector(metric + '_bucket', *matchers)}{RATE})))",
            f"p{round(q * 100)}{legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def traffic() -> tuple[str, list[Panel]]:
    return "Traffic", [
        timeseries_panel(
            "Requests per second by route and status",
            "Answered HTTP requests, summed over pods. `unmatched` collects requests for unknown paths.",
            "reqps",
            queries(
                (
                    f"sum by (route, status) (rate({selector(HTTP_REQUESTS_TOTAL)}{RATE}))",
                    "{{route}} {{status}}",
                )
            ),
            legend_table=True,
        ),
        timeseries_panel(
            "5xx error ratio by route (5m)",
            f"Share of answers that were 5xx, per route. Dashed: the {ERROR_RATIO_ALERT:.0%} alert threshold.",
            "percentunit",
            queries((selector(ROUTE_5XX_RATIO), "{{route}}")),
            steps=[("green", None), ("red", ERROR_RATIO_ALERT)],
        ),
        timeseries_panel(
            "Request latency p50 / p95 / p99 by route",
            f"From the request histogram, summed over pods. Dashed: the latency SLO threshold "
            f"({LATENCY_SLO_SECONDS}s) and the p95 alert ({P95_ALERT_SECONDS}s).",
            "s",
            queries(*_quantiles(HTTP_REQUEST_DURATION_SECONDS, f'route!="{UNMATCHED_ROUTE}"', group="route")),
            steps=[("green", None), ("orange", LATENCY_SLO_SECONDS), ("red", P95_ALERT_SECONDS)],
            legend_table=True,
        ),
        timeseries_panel(
            "Requests in flight per pod",
            "Requests being handled right now, summed over each pod's workers.",
            "short",
            queries((f"sum by (pod) ({selector(HTTP_REQUESTS_IN_FLIGHT)})", "{{pod}}")),
        ),
    ]


def _burn_rate_panel(slo: str) -> Panel:
    return timeseries_panel(
        f"{slo.capitalize()} SLO: error budget burn rate",
        "Burn rate per window: 1 spends the 30-day budget in exactly 30 days. Dashed: the alert thresholds "
        f"(1 over 3d and 6h opens a ticket; {MEDIUM_BURN} over 6h and 30m, or {FAST_BURN} over 1h and 5m, pages).",
        BURN_UNIT,
        queries(*((selector(BURN_RATE.format(window=window), f'slo="{slo}"'), window) for window in BURN_WINDOWS)),
        width=9,
        steps=[("green", None), ("yellow", 1), ("orange", MEDIUM_BURN), ("red", FAST_BURN)],
        legend_table=True,
    )


def slo() -> tuple[str, list[Panel]]:
    return "SLO", [
        _burn_rate_panel("availability"),
        _burn_rate_panel("latency"),
        stat_panel(
            "Error budget remaining (30 days)",
            "Share of each SLO's 30-day error budget not yet spent; negative means overspent. Covers at most "
            "what Prometheus retains.",
            "percentunit",
            queries((selector(BUDGET_REMAINING), "{{slo}}")),
            [("red", None), ("orange", 0), ("green", 0.25)],
            width=6,
            decimals=1,
        ),
    ]


def model() -> tuple[str, list[Panel]]:
    predictions = f"rate({selector(MODEL_PREDICTIONS_TOTAL)}{RATE})"
    return "Model", [
        timeseries_panel(
            "Predictions per second by class",
            "Rows predicted, by predicted class, summed over pods.",
            "suffix: rows/s",
            queries((f"sum by (predicted_class) ({predictions})", "{{predicted_class}}")),
            width=8,
        ),
        timeseries_panel(
            "Class share (last hour) vs training prior",
            "Solid: share of rows predicted as each class over the last hour (what the prediction-drift alert "
            "compares). Dashed: the class's share in the training labels.",
            "percentunit",
            queries(
                (selector(CLASS_SHARE), "{{predicted_class}}"),
                (
                    f"max by (predicted_class) ({selector(MODEL_REFERENCE_CLASS_RATIO)})",
                    "{{predicted_class}} training prior",
                ),
            ),
            width=8,
            maximum=1,
        ).override_by_regexp(*dashed_series(".* training prior")),
        heatmap_panel(
            "Prediction confidence distribution",
            "Rows per confidence bucket (probability of the predicted class) per interval. A mass moving "
            "down means the model is unsure of what it sees.",
            "percentunit",
            f"sum by (le) (increase({selector(MODEL_PREDICTION_CONFIDENCE + '_bucket')}{RATE}))",
            width=8,
        ),
        timeseries_panel(
            "Mean prediction confidence (last hour)",
            f"Average probability of the predicted class. Dashed: the {CONFIDENCE_ALERT:.0%} alert threshold.",
            "percentunit",
            queries((selector(MEAN_CONFIDENCE), "mean confidence")),
            width=6,
            maximum=1,
            steps=[("red", None), ("green", CONFIDENCE_ALERT)],
        ),
        timeseries_panel(
            "Inference time p50 / p95 / p99",
            "Time in the model call alone (one batch), summed over pods. Compare with request latency to "
            "see where time goes.",
            "s",
            queries(*_quantiles(MODEL_INFERENCE_DURATION_SECONDS)),
            width=6,
        ),
        timeseries_panel(
            "Batch size (rows per request)",
            "Rows per accepted /predict request: median, p95 (bucket bounds) and mean.",
            "short",
            queries(
                *_quantiles(MODEL_BATCH_ROWS)[:2],
                (
                    f"sum(rate({selector(MODEL_BATCH_ROWS + '_sum')}{RATE})) "
                    f"/ sum(rate({selector(MODEL_BATCH_ROWS + '_count')}{RATE}))",
                    "mean",
                ),
            ),
            width=6,
        ),
        timeseries_panel(
            "Invalid inputs by reason",
            "Request bodies refused with a 4xx, by the check that failed. Every reason is exported from the "
            "start, so a flat 0 means no refusals, not missing data.",
            "reqps",
            queries((f"sum by (reason) (rate({selector(MODEL_INVALID_REQUESTS_TOTAL)}{RATE}))", "{{reason}}")),
            width=6,
            legend_table=True,
        ),
        table_panel(
            "Model version per pod",
            "The model each pod serves. More than one version for long means a stuck rollout.",
            queries((f"max by (pod, model_name, model_version) ({selector(MODEL_INFO)})", "{{pod}}")),
            hidden_columns=("Time", "Value"),
            width=24,
            height=6,
        ),
        *_quality(),
    ]


def _quality() -> list[Panel]:
    """Model quality from ground truth: what POST /feedback reported for earlier predictions."""
    gate = (
        f"The accuracy alert needs at least {ACCURACY_MIN_FEEDBACK} feedback items in the hour: fewer, and a "
        "few unlucky items swing the ratio."
    )
    return [
        timeseries_panel(
            "Live accuracy (last hour) vs training accuracy",
            "Solid: share of the predictions that got feedback in the last hour whose reported class was the "
            "predicted one. Dashed: the model's accuracy on its held-out test split at training time, and "
            f"the alert line {ACCURACY_ALERT_DROP:.0%} below it. " + gate,
            "percentunit",
            queries(
                (selector(LIVE_ACCURACY), "live accuracy"),
                (selector(TRAINING_ACCURACY), "training accuracy"),
                (f"{selector(TRAINING_ACCURACY)} - {ACCURACY_ALERT_DROP}", "alert line"),
            ),
            width=8,
            maximum=1,
        ).override_by_regexp(*dashed_series("training accuracy|alert line")),
        timeseries_panel(
            "Recall per class (last hour)",
            "For each actual class (as reported by feedback), the share of its items the model predicted "
            "right. A class falling alone points at that class: concept drift or its labels.",
            "percentunit",
            queries((selector(RECALL), "{{actual_class}}")),
            width=8,
            maximum=1,
        ),
        timeseries_panel(
            "Feedback items per second",
            "Ground-truth items received by POST /feedback, summed over pods, over 5 minutes and over the "
            f"hour the accuracy is computed on. Dashed: {ACCURACY_MIN_FEEDBACK} items an hour. " + gate,
            "suffix: items/s",
            queries(
                (selector(FEEDBACK_PER_SECOND_5M), "5m"),
                (selector(FEEDBACK_PER_SECOND_1H), "1h"),
            ),
            width=8,
            steps=[("orange", None), ("green", ACCURACY_MIN_FEEDBACK / 3600)],
        ),
        matrix_panel(
            "Confusion matrix (feedback)",
            "Feedback items per second over the dashboard's time range: one row per actual class (what "
            "feedback reported), one column per predicted class. The diagonal is right; a large cell off it "
            "says which class is mistaken for which.",
            "suffix: items/s",
            f"sum by (actual_class, predicted_class) (rate({selector(MODEL_FEEDBACK_TOTAL)}[$__range]))",
            row_label="actual_class",
            column_label="predicted_class",
            width=16,
        ),
        stat_panel(
            "Feedback items in the last hour",
            gate,
            "short",
            queries((f"{selector(FEEDBACK_PER_SECOND_1H)} * 3600", "items")),
            [("orange", None), ("green", ACCURACY_MIN_FEEDBACK)],
            width=8,
            decimals=0,
        ),
    ]


def drift() -> tuple[str, list[Panel]]:
    psi_steps = [("green", None), ("orange", PSI_WARNING), ("red", PSI_CRITICAL)]
    psi_help = (
        f"Population Stability Index of each input feature over the last {PSI_WINDOW}, against the training "
        f"distribution. Below {PSI_WARNING} stable, {PSI_WARNING}-{PSI_CRITICAL} moderate shift (warning), "
        f"above {PSI_CRITICAL} major shift (critical)."
    )
    return "Drift", [
        timeseries_panel(
            f"Input drift: PSI per feature (last {PSI_WINDOW})",
            psi_help + " Dashed: the two thresholds.",
            "none",
            queries((selector(FEATURE_PSI), "{{feature}}")),
            width=12,
            steps=psi_steps,
            legend_table=True,
        ),
        bar_gauge_panel(
            "PSI per feature, now",
            psi_help,
            "none",
            queries((f"sort_desc({selector(FEATURE_PSI)})", "{{feature}}")),
            psi_steps,
            width=8,
            maximum=0.5,
        ),
        stat_panel(
            "Rows in the last hour",
            f"Prediction-drift and confidence alerts need at least {MODEL_MIN_ROWS} rows in the hour (the drift "
            f"alerts {thresholds.DRIFT_MIN_ROWS} values of a feature in {PSI_WINDOW}): fewer, and the estimates "
            "are noise.",
            "short",
            queries((f"{selector(ROWS_PER_SECOND_1H)} * 3600", "rows")),
            [("orange", None), ("green", MODEL_MIN_ROWS)],
            width=4,
            decimals=0,
        ),
    ]


def alerts() -> tuple[str, list[Panel]]:
    # Alerts carry the namespace and job of what they are about; WineClassifierDown, when no target exists
    # at all, carries only the job.
    firing = (
        'ALERTS{alertstate="firing", namespace="$namespace", job="$job"} '
        'or ALERTS{alertstate="firing", alertname="WineClassifierDown", job="$job"}'
    )
    return "Alerts", [
        table_panel(
            "Firing alerts",
            "Alerts of this service firing now, with their labels. Runbooks: docs/runbooks.md.",
            queries((firing, "{{alertname}}")),
            hidden_columns=("Time", "Value", "__name__", "alertstate"),
            width=16,
        ),
        timeseries_panel(
            "Firing alerts over time",
            "Number of firing alerts of this service, by alert name and severity.",
            "short",
            queries((f"count by (alertname, severity) ({firing})", "{{alertname}} ({{severity}})")),
            width=8,
        ),
    ]


ROWS = (traffic, slo, model, drift, alerts)
