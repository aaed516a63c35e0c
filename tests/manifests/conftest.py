"""Fixtures for the static checks of the cluster path: rendered manifests, helmfile values, chart defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from declarations import helm
from declarations.manifests import render
from tests.manifests.deploy_spec import HELMFILE, MANIFESTS, ROOT, Obj


@pytest.fixture(scope="session")
def base_objects() -> list[Obj]:
    """`kubectl kustomize manifests`: what `kubectl apply -k manifests` sends."""
    return render(MANIFESTS)


@pytest.fixture(scope="session")
def top_objects() -> list[Obj]:
    """`kubectl kustomize .`: what `kubectl apply -k .` sends (the base plus one label)."""
    return render(ROOT)


@pytest.fixture(scope="session")
def helmfile() -> dict[str, Any]:
    return yaml.safe_load(HELMFILE.read_text())


@pytest.fixture(scope="session")
def release() -> dict[str, Any]:
    """The one kube-prometheus-stack release of helmfile.yaml."""
    return helm.release(HELMFILE)


@pytest.fixture(scope="session")
def values(release: dict[str, Any]) -> dict[str, Any]:
    """The values helmfile passes to the release, files and inline maps merged in order (as `helm -f` does)."""
    return helm.chart_values(HELMFILE)


@pytest.fixture(scope="session")
def chart_defaults(shared_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((shared_dir / helm.CHART_VALUES).read_text())


@pytest.fixture(scope="session")
def grafana_defaults(shared_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((shared_dir / helm.GRAFANA_CHART_VALUES).read_text())
