"""Model quality from ground truth: what POST /feedback reported for earlier predictions. These panels close
the Model row (`dashboard.rows.model`)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import units

from alerts import panels, thresholds
from app.metrics import MODEL_FEEDBACK_TOTAL
from dashboard.panels import (
    ITEMS_PER_SECOND_UNIT,
    hourly_count_stat,
    matrix_panel,
    queries,
    selector,
    timeseries_panel,
)

# Recorded by manifests/prometheusrule-*.yaml.
LIVE_ACCURACY = "namespace_job:model_accuracy:ratio_rate1h"
TRAINING_ACCURACY = "namespace_job:model_training_accuracy:max"
RECALL = "namespace_job_actual:model_recall:ratio_rate1h"
FEEDBACK_PER_SECOND_5M = "namespace_job:model_feedback:rate5m"
FEEDBACK_PER_SECOND_1H = "namespace_job:model_feedback:rate1h"

# Alert thresholds (alerts/thresholds.py), drawn as dashed lines.
ACCURACY_ALERT_DROP = thresholds.ACCURACY_DROP  # below the training accuracy
ACCURACY_MIN_FEEDBACK = thresholds.ACCURACY_MIN_FEEDBACK  # items in the hour

GATE = (
    f"The accuracy alert needs at least {ACCURACY_MIN_FEEDBACK} feedback items in the hour: fewer, and a "
    "few unlucky items swing the ratio."
)


def accuracy_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.ACCURACY,
        "Solid: share of the predictions that got feedback in the last hour whose reported class was the "
        "predicted one. Dashed: the model's accuracy on its held-out test split at training time, and "
        f"the alert line {ACCURACY_ALERT_DROP:.0%} below it. " + GATE,
        units.PercentUnit,
        queries(
            (selector(LIVE_ACCURACY), "live accuracy"),
            (selector(TRAINING_ACCURACY), "training accuracy"),
            (f"{selector(TRAINING_ACCURACY)} - {ACCURACY_ALERT_DROP}", "alert line"),
        ),
        width=8,
        maximum=1,
        dashed="training accuracy|alert line",
    )


def recall_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Recall per class (last hour)",
        "For each actual class (as reported by feedback), the share of its items the model predicted "
        "right. A class falling alone points at that class: concept drift or its labels.",
        units.PercentUnit,
        queries((selector(RECALL), "{{actual_class}}")),
        width=8,
        maximum=1,
    )


def feedback_rate_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Feedback items per second",
        "Ground-truth items received by POST /feedback, summed over pods, over 5 minutes and over the "
        f"hour the accuracy is computed on. Dashed: {ACCURACY_MIN_FEEDBACK} items an hour. " + GATE,
        ITEMS_PER_SECOND_UNIT,
        queries(
            (selector(FEEDBACK_PER_SECOND_5M), "5m"),
            (selector(FEEDBACK_PER_SECOND_1H), "1h"),
        ),
        width=8,
        steps=[("orange", None), ("green", ACCURACY_MIN_FEEDBACK / 3600)],
    )


def confusion_matrix_table() -> table.Panel:
    return matrix_panel(
        "Confusion matrix (feedback)",
        "Feedback items per second over the dashboard's time range: one row per actual class (what "
        "feedback reported), one column per predicted class. The diagonal is right; a large cell off it "
        "says which class is mistaken for which.",
        ITEMS_PER_SECOND_UNIT,
        f"sum by (actual_class, predicted_class) (rate({selector(MODEL_FEEDBACK_TOTAL)}[$__range]))",
        row_label="actual_class",
        column_label="predicted_class",
        width=16,
    )


def feedback_last_hour_stat() -> stat.Panel:
    return hourly_count_stat(
        "Feedback items in the last hour", GATE, FEEDBACK_PER_SECOND_1H, "items", ACCURACY_MIN_FEEDBACK, width=8
    )


PANELS = (
    accuracy_timeseries,
    recall_timeseries,
    feedback_rate_timeseries,
    confusion_matrix_table,
    feedback_last_hour_stat,
)
