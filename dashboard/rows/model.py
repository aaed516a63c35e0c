"""Model row: what the model outputs and how fast, what it refuses, which version runs, then its quality
measured against feedback (`dashboard.rows.quality`)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import heatmap, table, timeseries
from grafana_foundation_sdk.models import units

from alerts import panels, thresholds
from app.metrics import (
    MODEL_BATCH_ROWS,
    MODEL_INFERENCE_DURATION_SECONDS,
    MODEL_INFO,
    MODEL_INVALID_REQUESTS_TOTAL,
    MODEL_PREDICTION_CONFIDENCE,
    MODEL_PREDICTIONS_TOTAL,
    MODEL_REFERENCE_CLASS_RATIO,
)
from dashboard.panels import (
    RATE,
    ROWS_PER_SECOND_UNIT,
    heatmap_panel,
    quantiles,
    queries,
    selector,
    table_panel,
    timeseries_panel,
)
from dashboard.rows import quality

TITLE = "Model"

# Recorded by manifests/prometheusrule-*.yaml.
CLASS_SHARE = "namespace_job_class:model_predictions:ratio_rate1h"
MEAN_CONFIDENCE = "namespace_job:model_prediction_confidence:mean1h"

# Alert threshold of the PrometheusRule, drawn as a dashed line.
CONFIDENCE_ALERT = thresholds.CONFIDENCE_MIN


def predictions_per_second_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Predictions per second by class",
        "Rows predicted, by predicted class, summed over pods.",
        ROWS_PER_SECOND_UNIT,
        queries((f"sum by (predicted_class) (rate({selector(MODEL_PREDICTIONS_TOTAL)}{RATE}))", "{{predicted_class}}")),
        width=8,
    )


def class_share_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.CLASS_SHARE,
        "Solid: share of rows predicted as each class over the last hour (what the prediction-drift alert "
        "compares). Dashed: the class's share in the training labels.",
        units.PercentUnit,
        queries(
            (selector(CLASS_SHARE), "{{predicted_class}}"),
            (
                f"max by (predicted_class) ({selector(MODEL_REFERENCE_CLASS_RATIO)})",
                "{{predicted_class}} training prior",
            ),
        ),
        width=8,
        maximum=1,
        dashed=".* training prior",
    )


def confidence_heatmap() -> heatmap.Panel:
    return heatmap_panel(
        "Prediction confidence distribution",
        "Rows per confidence bucket (probability of the predicted class) per interval. A mass moving "
        "down means the model is unsure of what it sees.",
        units.PercentUnit,
        f"sum by (le) (increase({selector(MODEL_PREDICTION_CONFIDENCE + '_bucket')}{RATE}))",
        width=8,
    )


def mean_confidence_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.CONFIDENCE,
        f"Average probability of the predicted class. Dashed: the {CONFIDENCE_ALERT:.0%} alert threshold.",
        units.PercentUnit,
        queries((selector(MEAN_CONFIDENCE), "mean confidence")),
        width=6,
        maximum=1,
        steps=[("red", None), ("green", CONFIDENCE_ALERT)],
    )


def inference_time_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Inference time p50 / p95 / p99",
        "Time in the model call alone (one batch), summed over pods. Compare with request latency to "
        "see where time goes.",
        units.Seconds,
        queries(*quantiles(MODEL_INFERENCE_DURATION_SECONDS)),
        width=6,
    )


def batch_size_timeseries() -> timeseries.Panel:
    median_and_p95 = quantiles(MODEL_BATCH_ROWS)[:2]
    mean = (
        f"sum(rate({selector(MODEL_BATCH_ROWS + '_sum')}{RATE})) "
        f"/ sum(rate({selector(MODEL_BATCH_ROWS + '_count')}{RATE}))"
    )
    return timeseries_panel(
        "Batch size (rows per request)",
        "Rows per accepted /predict request: median, p95 (bucket bounds) and mean.",
        units.Short,
        queries(*median_and_p95, (mean, "mean")),
        width=6,
    )


def invalid_inputs_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.INVALID_INPUTS,
        "Request bodies refused with a 4xx, by the check that failed. Every reason is exported from the "
        "start, so a flat 0 means no refusals, not missing data.",
        units.RequestsPerSecond,
        queries((f"sum by (reason) (rate({selector(MODEL_INVALID_REQUESTS_TOTAL)}{RATE}))", "{{reason}}")),
        width=6,
        legend_table=True,
    )


def model_version_table() -> table.Panel:
    return table_panel(
        panels.MODEL_VERSION,
        "The model each pod serves. More than one version for long means a stuck rollout.",
        queries((f"max by (pod, model_name, model_version) ({selector(MODEL_INFO)})", "{{pod}}")),
        hidden_columns=("Time", "Value"),
        width=24,
        height=6,
    )


PANELS = (
    predictions_per_second_timeseries,
    class_share_timeseries,
    confidence_heatmap,
    mean_confidence_timeseries,
    inference_time_timeseries,
    batch_size_timeseries,
    invalid_inputs_timeseries,
    model_version_table,
    *quality.PANELS,
)
