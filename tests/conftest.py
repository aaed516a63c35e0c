"""Fixtures shared by every test level. Starting processes is `harness.server`'s job; these only scope them."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from declarations import chart
from harness.server import Server, start_server
from tests.availability import unavailable


def _binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not on PATH: `make deps` installs it (Debian package {package})")
    return path


# What the reference data must hold (docs/testing.md, "Reference data"): the pinned charts and the CRDs.
REFERENCE_FILES = (chart.CHART_DIR / "Chart.yaml", Path("charts") / "keda" / "Chart.yaml", Path("crds"))


def reference_data() -> tuple[Path, str | None]:
    """`$SHARED_DIR` (default: shared/ next to the project) and, when it lacks something, the one-line reason."""
    path = chart.default_shared_dir()
    missing = [str(f) for f in REFERENCE_FILES if not (path / f).exists()]
    if not missing:
        return path, None
    return path, (
        f"reference data not found at {path} (no {', '.join(missing)}): set SHARED_DIR to a directory holding the "
        "pinned kube-prometheus-stack and KEDA charts and their CRDs (docs/testing.md, Reference data)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need the reference data skip, each with the same one line, where it is absent; CI must run
    them, so there the run stops at once with that line instead of failing each test in its setup."""
    _, problem = reference_data()
    needing = [item for item in items if "shared_dir" in getattr(item, "fixturenames", ())]
    if problem is None or not needing:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI: {problem}; {len(needing)} collected tests need it")
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference data (the pinned chart, the operator's CRDs) from `$SHARED_DIR`: see reference_data()."""
    path, problem = reference_data()
    if problem:
        unavailable(problem)
    return path


@pytest.fixture(scope="session")
def chart_objects(shared_dir: Path) -> list[dict[str, Any]]:
    """Every object kube-prometheus-stack renders with helmfile's values (Helm, via helm-python-sdk), once per run."""
    objects = chart.rendered(shared_dir)
    if objects is None:
        unavailable(chart.source(shared_dir))
    print(f"\n{chart.source(shared_dir)}: {len(objects)} objects")
    return objects


@pytest.fixture(scope="session")
def chart_prometheus(chart_objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Prometheus object the chart renders."""
    return chart.prometheus(chart_objects)


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _binary("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly trained artefact, made once per run with the real training entry point."""
    from app.train import train, write_artefact

    out = tmp_path_factory.mktemp("model")
    write_artefact(*train(), out)
    return out


@pytest.fixture()
def server_factory(tmp_path: Path, model_dir: Path) -> Iterator:
    started: list[Server] = []

    def factory(workers: int = 2, model: Path | None = None, **env: str) -> Server:
        directory = tmp_path / f"server{len(started)}"
        directory.mkdir()
        server = start_server(directory, model or model_dir, workers, **env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL, timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("gunicorn"), model_dir, workers=2)
    yield running
    running.stop()
