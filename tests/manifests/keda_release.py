"""The KEDA release as helmfile.yaml declares it (declarations.helm), and what Helm renders of it
(declarations.chart, helm-python-sdk, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from declarations import chart, helm
from tests.manifests.deploy_spec import HELMFILE, Obj

KEDA_CHART = "keda"
KEDA_REPOSITORY = "https://kedacore.github.io/charts"
# Where the chart sits inside the reference data (`$SHARED_DIR`).
KEDA_CHART_DIR = Path("charts") / KEDA_CHART


def keda_release(helmfile: Path = HELMFILE) -> dict[str, Any]:
    return helm.release(helmfile, KEDA_CHART)


def keda_values(helmfile: Path = HELMFILE) -> dict[str, Any]:
    return helm.chart_values(helmfile, KEDA_CHART)


def keda_rendered(shared_dir: Path, helmfile: Path = HELMFILE) -> list[Obj]:
    """Every object the pinned KEDA chart renders under the release's name, namespace and values."""
    return chart.rendered_release(shared_dir / KEDA_CHART_DIR, KEDA_CHART, helmfile)
