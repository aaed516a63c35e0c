"""Fixtures shared by every test level."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference data (CRD schemas, chart defaults) from `$SHARED_DIR`, default `../shared`.

    A user's clone may not have it: skip with the reason. CI always has it: there a missing directory fails.
    """
    path = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared"))
    if not (path / "crds").is_dir():
        message = f"reference data not found at {path}: set SHARED_DIR to a copy of the project's shared/ directory"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly trained artefact, made once per run with the real training entry point."""
    from app.train import train, write_artefact

    out = tmp_path_factory.mktemp("model")
    write_artefact(*train(), out)
    return out
