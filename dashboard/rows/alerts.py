"""Alerts row: the alerts of this service firing now, and over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import units

from dashboard.panels import queries, table_panel, timeseries_panel

TITLE = "Alerts"

# Alerts carry the namespace and job of what they are about; WineClassifierDown, when no target exists at
# all, carries only the job.
FIRING = (
    'ALERTS{alertstate="firing", namespace="$namespace", job="$job"} '
    'or ALERTS{alertstate="firing", alertname="WineClassifierDown", job="$job"}'
)


def firing_table() -> table.Panel:
    return table_panel(
        "Firing alerts",
        "Alerts of this service firing now, with their labels. Runbooks: docs/runbooks.md.",
        queries((FIRING, "{{alertname}}")),
        hidden_columns=("Time", "Value", "__name__", "alertstate"),
        width=16,
    )


def firing_over_time_timeseries() -> timeseries.Panel:
    return timeseries_panel(
        "Firing alerts over time",
        "Number of firing alerts of this service, by alert name and severity.",
        units.Short,
        queries((f"count by (alertname, severity) ({FIRING})", "{{alertname}} ({{severity}})")),
        width=8,
    )


PANELS = (firing_table, firing_over_time_timeseries)
