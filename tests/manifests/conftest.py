"""Fixtures for the static checks of the cluster path: rendered manifests, helmfile values, chart defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from offcluster.manifests import render
from tests.manifests.deploy_spec import CHART, HELMFILE, MANIFESTS, ROOT, Obj
from tests.manifests.kube_logic import helm_merge


@pytest.fixture(scope="session")
def base_objects() -> list[Obj]:
    """`kubectl kustomize manifests`: what `kubectl apply -k manifests` sends."""
    return render(MANIFESTS)


@pytest.fixture(scope="session")
def top_objects() -> list[Obj]:
    """`kubectl kustomize .`: what `kubectl apply -k .` sends (the base plus the pinned image)."""
    return render(ROOT)


@pytest.fixture(scope="session")
def helmfile() -> dict[str, Any]:
    return yaml.safe_load(HELMFILE.read_text())


@pytest.fixture(scope="session")
def release(helmfile: dict[str, Any]) -> dict[str, Any]:
    """The one kube-prometheus-stack release of helmfile.yaml."""
    releases = [r for r in helmfile.get("releases") or [] if str(r.get("chart", "")).endswith(f"/{CHART}")]
    assert len(releases) == 1, f"helmfile.yaml must declare exactly one {CHART} release, found {len(releases)}"
    return releases[0]


@pytest.fixture(scope="session")
def values(release: dict[str, Any]) -> dict[str, Any]:
    """The values helmfile passes to the release, files and inline maps merged in order (as `helm -f` does)."""
    merged: dict[str, Any] = {}
    for entry in release.get("values") or []:
        if isinstance(entry, str):
            path = HELMFILE.parent / entry
            assert path.is_file(), f"helmfile.yaml names a values file that does not exist: {entry}"
            entry = yaml.safe_load(path.read_text()) or {}
        merged = helm_merge(merged, entry)
    return merged


@pytest.fixture(scope="session")
def chart_defaults(shared_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((shared_dir / "charts" / CHART / "values.yaml").read_text())


@pytest.fixture(scope="session")
def grafana_defaults(shared_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((shared_dir / "charts" / "grafana" / "values.yaml").read_text())


@pytest.fixture(scope="session")
def effective_values(chart_defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What the chart's templates see: its defaults with the helmfile values coalesced on top."""
    return helm_merge(chart_defaults, values)


@pytest.fixture(scope="session")
def effective_grafana_values(
    grafana_defaults: dict[str, Any], chart_defaults: dict[str, Any], values: dict[str, Any]
) -> dict[str, Any]:
    """What the Grafana subchart sees: its own defaults, then the parent chart's `grafana:`, then ours."""
    parent = helm_merge(grafana_defaults, chart_defaults.get("grafana") or {})
    return helm_merge(parent, values.get("grafana") or {})
