"""The reliability tests use the shared `server` / `server_factory` fixtures (tests/conftest.py).

A test here is marked `e2e` when it uses a fixture that starts processes, so `pytest -m "not e2e"` still
runs the static ones (repository scan, dependency pins, in-process app checks) without gunicorn.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Fixtures whose use means real processes on 127.0.0.1.
PROCESS_FIXTURES = frozenset({"server", "server_factory", "stack", "fuzz_server"})


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
