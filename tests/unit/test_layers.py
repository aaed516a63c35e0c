"""Packages by role, and import arrows that only run downhill: a package imports only packages on a lower floor.

Floor 0 is what the rest stands on (the service itself, and the reading of the declarations); each floor above
uses the ones below. Two packages on one floor do not import each other. Every import counts, including the ones
inside functions. tests/ sits above everything and is not checked; loadtest/ imports none of the packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from declarations.paths import ROOT

FLOORS: dict[str, int] = {
    # The model server (the only thing the image runs) and the declarations read as the cluster reads them.
    "app": 0,
    "declarations": 0,
    # The load generator, which imports none of the packages: the dashboard reads its metric names
    # (loadtest/metrics.py) as it reads the app's.
    "loadtest": 0,
    # The rules generated from the thresholds; the discovery doctor.
    "alerts": 1,
    "doctor": 1,
    # The dashboard draws the alerts' thresholds.
    "dashboard": 2,
    # The local stack: configured from the declarations, with the alerts' links moved to its ports.
    "offcluster": 3,
    # The test and benchmark harness drives the local stack.
    "harness": 4,
    # Measurement tools: detection times of the alerts, benchmarks.
    "detection": 5,
    "benchmarks": 5,
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names `path` imports (absolute imports; a relative import stays inside its package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def uphill_imports(package: str, root: Path = ROOT) -> list[str]:
    wrong = []
    for path in sorted((root / package).rglob("*.py")):
        for name in sorted(imported_packages(path) & FLOORS.keys() - {package}):
            if FLOORS[name] >= FLOORS[package]:
                wrong.append(f"{path.relative_to(root)} imports {name} (floor {FLOORS[name]} >= {FLOORS[package]})")
    return wrong


def test_every_package_has_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"loadtest"}
    assert packages == set(FLOORS), "give a new package its floor here"


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_imports_run_downhill(package: str) -> None:
    assert uphill_imports(package) == []


def test_the_check_sees_an_uphill_import(tmp_path: Path) -> None:
    (tmp_path / "alerts").mkdir()
    module = tmp_path / "alerts" / "m.py"
    module.write_text("import os\nfrom declarations import chart\n\ndef f():\n    from doctor.walk import Report\n")
    assert imported_packages(module) == {"os", "declarations", "doctor"}
    assert uphill_imports("alerts", tmp_path) == ["alerts/m.py imports doctor (floor 1 >= 1)"]
