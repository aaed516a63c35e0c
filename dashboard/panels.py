"""Panel constructors with this dashboard's conventions baked in.

Every panel reads from the `${datasource}` variable, sets a unit, and gets a legend; every query is scoped
with SCOPE (or, for ALERTS, with what the alert carries). The row modules in `dashboard.rows` only say what
to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common, dashboard, units
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
# The label filter of every query: the dashboard variables, as set by the ServiceMonitor's target labels.
SCOPE = 'namespace="$namespace", job="$job"'
# The range of every rate: Grafana's `$__rate_interval` follows the panel's resolution, and is never shorter
# than four scrape intervals.
RATE = "[$__rate_interval]"

# Grafana's custom "suffix:" units, for quantities the SDK's `units` has no name for.
ROWS_PER_SECOND_UNIT = "suffix: rows/s"
ITEMS_PER_SECOND_UNIT = "suffix: items/s"
MULTIPLE_UNIT = "suffix:x"

Steps = Sequence[tuple[str, float | None]]
_DASHED_LINE = dashboard.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})
P = TypeVar("P")


def selector(metric: str, *matchers: str) -> str:
    """`metric{namespace="$namespace", job="$job", <matchers>}`."""
    return f"{metric}{{{', '.join([SCOPE, *matchers])}}}"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend).ref_id(ref)


def queries(*pairs: tuple[str, str]) -> list[prometheus.Dataquery]:
    """(expr, legend) pairs as targets A, B, C, ..."""
    return [query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def quantiles(metric: str, *matchers: str, group: str = "") -> list[tuple[str, str]]:
    """(expr, legend) of p50, p95, p99 of histogram `metric` over all pods, per value of label `group` if given."""
    by = f"{group}, le" if group else "le"
    legend = f" {{{{{group}}}}}" if group else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({by}) (rate({selector(metric + '_bucket', *matchers)}{RATE})))",
            f"p{round(q * 100)}{legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def thresholds(steps: Steps) -> dashboard_builders.ThresholdsConfig:
    """Absolute steps: (colour, lower bound); the first bound is None (from minus infinity)."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for color, value in steps])
    )


def _legend(as_table: bool) -> common_builders.VizLegendOptions:
    legend = common_builders.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
    if as_table:
        return legend.display_mode(common.LegendDisplayMode.TABLE).calcs(["lastNotNull", "max"])
    return legend.display_mode(common.LegendDisplayMode.LIST)


def _framed(
    panel: P, title: str, description: str, unit: str, targets: Sequence[prometheus.Dataquery], width: int, height: int
) -> P:
    """What every panel sets alike: title, description, the datasource variable, queries, unit and size."""
    return (
        panel.title(title)  # type: ignore[attr-defined]
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(width)
        .height(height)
    )


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 12,
    height: int = 8,
    steps: Steps | None = None,
    minimum: float | None = 0,
    maximum: float | None = None,
    legend_table: bool = False,
    dashed: str | None = None,
) -> timeseries.Panel:
    """A time series; `steps` are also drawn as lines, so thresholds are visible on the graph, and series
    whose legend matches the regexp `dashed` are drawn dashed (references, priors, alert lines)."""
    panel = (
        _framed(timeseries.Panel(), title, description, unit, targets, width, height)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend(legend_table))
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if steps is not None:
        panel = panel.thresholds(thresholds(steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if dashed is not None:
        panel = panel.override_by_regexp(dashed, [_DASHED_LINE])
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    steps: Steps,
    *,
    width: int = 6,
    height: int = 8,
    decimals: float | None = None,
) -> stat.Panel:
    panel = (
        _framed(stat.Panel(), title, description, unit, targets, width, height)
        .thresholds(thresholds(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel if decimals is None else panel.decimals(decimals)


def hourly_count_stat(
    title: str, description: str, per_second_1h: str, legend: str, minimum: float, *, width: int
) -> stat.Panel:
    """Events in the last hour, from a recorded 1h per-second rate: orange below `minimum`, the count an
    alert needs before it may fire, green from there on."""
    return stat_panel(
        title,
        description,
        units.Short,
        queries((f"{selector(per_second_1h)} * 3600", legend)),
        [("orange", None), ("green", minimum)],
        width=width,
        decimals=0,
    )


def bar_gauge_panel(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus.Dataquery],
    steps: Steps,
    *,
    width: int = 8,
    height: int = 8,
    minimum: float = 0,
    maximum: float | None = None,
) -> bargauge.Panel:
    panel = (
        _framed(bargauge.Panel(), title, description, unit, targets, width, height)
        .min(minimum)
        .thresholds(thresholds(steps))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel if maximum is None else panel.max(maximum)


def heatmap_panel(
    title: str,
    description: str,
    y_unit: str,
    expr: str,
    *,
    width: int = 8,
    height: int = 8,
) -> heatmap.Panel:
    """A heatmap of a histogram's buckets: `expr` must keep `le`, and yields counts per bucket."""
    target = query(expr, "{{le}}").format(PromQueryFormat.HEATMAP)
    return (
        _framed(heatmap.Panel(), title, description, units.Short, [target], width, height)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .color(heatmap.HeatmapColorOptions().mode(heatmap_models.HeatmapColorMode.SCHEME).scheme("Oranges"))
        .cell_values(heatmap.CellValues().unit(units.Short))
        .show_legend()
    )


def table_panel(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    hidden_columns: Sequence[str],
    *,
    width: int = 12,
    height: int = 8,
) -> table.Panel:
    """An instant query shown as one row per series, without the columns named in `hidden_columns`."""
    instant = [t.instant().format(PromQueryFormat.TABLE) for t in targets]
    organize = dashboard.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(hidden_columns, True), "renameByName": {}, "indexByName": {}},
    )
    panel = _framed(table.Panel(), title, description, units.NoUnit, instant, width, height)
    return panel.with_transformation(organize)


def matrix_panel(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    row_label: str,
    column_label: str,
    width: int = 12,
    height: int = 8,
) -> table.Panel:
    """An instant query with two labels laid out as a matrix: one row per value of `row_label`, one column
    per value of `column_label`, the query's value in each cell (Grafana's "grouping to matrix")."""
    target = query(expr, f"{{{{{row_label}}}}} / {{{{{column_label}}}}}").instant().format(PromQueryFormat.TABLE)
    to_matrix = dashboard.DataTransformerConfig(
        id_val="groupingToMatrix",
        options={"rowField": row_label, "columnField": column_label, "valueField": "Value"},
    )
    return _framed(table.Panel(), title, description, unit, [target], width, height).with_transformation(to_matrix)


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).collapsed(False)
