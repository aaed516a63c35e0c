"""Canary row: the canary pods (`track: canary`, see canary/) and the stable ones side by side, on what the
canary alert compares. Without a canary each panel shows the stable track alone. Dashed: the line the canary
crosses when the alert's condition holds, drawn from stable's value and the alert's thresholds."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import units

from alerts import panels
from alerts import thresholds as t

# Recorded by manifests/prometheusrule-canary.yaml: the names come from the module that generates it.
from alerts.canary import ACCURACY, CLASS_SHARE, CONFIDENCE, ERRORS, FEEDBACK, P95, REQUESTS, VERSION
from dashboard.panels import queries, selector, table_panel, timeseries_panel

TITLE = "Canary against stable"

W = t.CANARY_WINDOW
STABLE = 'track="stable"'
ALERT_LINE = "alert line"
GATE = f"The alert judges the canary only over {W} and with enough of its traffic (docs/runbooks.md)."


def version_table() -> table.Panel:
    return table_panel(
        "Model version per track",
        "The model version the stable pods and the canary pods serve.",
        queries((selector(VERSION), "{{track}}")),
        hidden_columns=("Time", "Value", "__name__"),
        width=24,
        height=5,
    )


def accuracy_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        panels.CANARY_ACCURACY,
        "Share of each track's predictions that feedback confirmed as right. Dashed: "
        f"{t.CANARY_ACCURACY_DROP:.0%} below stable's, where the canary alert's accuracy branch starts. " + GATE,
        units.PercentUnit,
        queries(
            (selector(ACCURACY), "{{track}}"),
            (f"{selector(ACCURACY, STABLE)} - {t.CANARY_ACCURACY_DROP:g}", ALERT_LINE),
        ),
        width=8,
        maximum=1,
        dashed=ALERT_LINE,
    )


def confidence_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        f"Mean confidence by track (last {W})",
        f"Probability of the predicted class, averaged over each track's rows. Dashed: "
        f"{t.CANARY_CONFIDENCE_DROP:g} below stable's. " + GATE,
        units.PercentUnit,
        queries(
            (selector(CONFIDENCE), "{{track}}"),
            (f"{selector(CONFIDENCE, STABLE)} - {t.CANARY_CONFIDENCE_DROP:g}", ALERT_LINE),
        ),
        width=8,
        maximum=1,
        dashed=ALERT_LINE,
    )


def class_share_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        f"Class share by track (last {W})",
        f"Share of each track's rows predicted as each class. The alert fires when one class's share differs "
        f"between the tracks by more than {t.CANARY_CLASS_SHARE_DIFF:.0%}. " + GATE,
        units.PercentUnit,
        queries((selector(CLASS_SHARE), "{{track}} {{predicted_class}}")),
        width=8,
        maximum=1,
    )


def errors_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        f"5xx ratio of /predict by track (last {W})",
        f"Dashed: {t.CANARY_ERROR_MARGIN:.0%} above stable's. " + GATE,
        units.PercentUnit,
        queries(
            (selector(ERRORS), "{{track}}"),
            (f"{selector(ERRORS, STABLE)} + {t.CANARY_ERROR_MARGIN:g}", ALERT_LINE),
        ),
        width=8,
        dashed=ALERT_LINE,
    )


def latency_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        f"p95 latency of /predict by track (last {W})",
        f"Dashed: {t.CANARY_P95_FACTOR:g} times stable's (the alert also needs the canary above "
        f"{t.CANARY_P95_FLOOR_SECONDS:g} s). " + GATE,
        units.Seconds,
        queries(
            (selector(P95), "{{track}}"),
            (f"{selector(P95, STABLE)} * {t.CANARY_P95_FACTOR:g}", ALERT_LINE),
        ),
        width=8,
        dashed=ALERT_LINE,
    )


def volume_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        f"Requests and feedback per second by track (last {W})",
        "/predict requests and feedback items, per track: the canary's share of the traffic, and whether "
        f"it has the volume to be judged ({t.CANARY_MIN_REQUESTS} requests, {t.CANARY_MIN_FEEDBACK} feedback "
        f"items in {W}).",
        units.RequestsPerSecond,
        queries((selector(REQUESTS), "{{track}} requests"), (selector(FEEDBACK), "{{track}} feedback")),
        width=8,
    )


PANELS = (
    version_table,
    accuracy_timeseries,
    confidence_timeseries,
    class_share_timeseries,
    errors_timeseries,
    latency_timeseries,
    volume_timeseries,
)
