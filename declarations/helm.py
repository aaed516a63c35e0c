"""The kube-prometheus-stack release as helmfile declares it, and Helm's way of merging values."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from declarations.manifests import RenderError
from declarations.paths import HELMFILE

__all__ = ["CHART", "HELMFILE", "chart_values", "helm_merge", "release"]
CHART = "kube-prometheus-stack"
# Where the chart's defaults sit inside the reference data (`$SHARED_DIR`), for the chart and its Grafana subchart.
CHART_VALUES = Path("charts") / CHART / "values.yaml"
GRAFANA_CHART_VALUES = Path("charts") / "grafana" / "values.yaml"


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of user values onto defaults: maps merge key by key, a user `null` deletes the key,
    anything else (lists included) replaces."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def release(helmfile: Path = HELMFILE, chart: str = CHART) -> dict[str, Any]:
    """The one release of the helmfile whose chart is `<repository>/<chart>` (kube-prometheus-stack unless
    told: KEDA's is the other)."""
    if not helmfile.exists():
        raise RenderError(f"{helmfile} is missing: it declares the {chart} release")
    spec = yaml.safe_load(helmfile.read_text()) or {}
    releases = [r for r in spec.get("releases") or [] if str(r.get("chart", "")).endswith(f"/{chart}")]
    if len(releases) != 1:
        raise RenderError(f"{helmfile} must declare exactly one {chart} release, found {len(releases)}")
    return releases[0]


def chart_values(helmfile: Path = HELMFILE, chart: str = CHART) -> dict[str, Any]:
    """The values helmfile passes to the release: its files and inline maps merged in order, as `helm -f` does."""
    values: dict[str, Any] = {}
    for entry in release(helmfile, chart).get("values") or []:
        if isinstance(entry, str):
            path = helmfile.parent / entry
            if not path.is_file():
                raise RenderError(f"{helmfile} names a values file that does not exist: {entry}")
            entry = yaml.safe_load(path.read_text()) or {}
        values = helm_merge(values, entry)
    return values
