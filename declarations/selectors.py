"""Kubernetes label selectors, evaluated as the API server evaluates them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Labels = Mapping[str, str]


def selector_matches(selector: Mapping[str, Any] | None, labels: Labels) -> bool:
    """metav1.LabelSelector semantics: `{}` matches everything, None (absent) matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def service_selects(service_selector: Labels | None, labels: Labels) -> bool:
    """A Service's `spec.selector` (a plain map): every pair must be among the pod's labels; none selects nothing."""
    return bool(service_selector) and selector_matches({"matchLabels": service_selector}, labels)
