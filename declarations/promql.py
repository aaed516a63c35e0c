"""Metric names used by a PromQL expression, without a PromQL parser.

Good enough for the expressions of this project (dashboard panels and the PrometheusRule): it strips what
cannot be a metric name (strings, label matchers, ranges, grouping clauses, numbers, durations, Grafana
variables) and keeps the identifiers that are not functions or keywords. A name *after* `on`, `by` and the
like is a label, and a word followed by `(` is a function or aggregation.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# Durations before numbers, or `offset 5m` would leave an `m` behind.
_DURATION = re.compile(r"(?<![\w:.])\d+(?:ms|s|m|h|d|w|y)\b")
_NUMBER = re.compile(r"(?<![\w:.])(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()(?![A-Za-z0-9_:])")

KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
)
# Special float literals, case-insensitive in PromQL.
_LITERALS = frozenset({"inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """Every metric name (including recorded `a:b:c` names) that `expr` selects."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _DURATION.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name not in KEYWORDS and name.lower() not in _LITERALS}
