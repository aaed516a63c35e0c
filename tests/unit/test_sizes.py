"""Size limits of the product code, so that a module or a function that outgrows them is split by what its parts
do: no module over MODULE_LINES lines, no function or method over FUNCTION_LINES.

Checked: every Python file of the packages tests/unit/test_layers.py gives a floor (the service, the declarations,
the rules, the dashboard, the doctor, the local stack, the harness, the measurement tools, the load test).
Not checked: tests/ itself (fixtures and parametrised cases read best whole) and benchmarks/peer_servers/ (a
script run inside another project's virtualenv).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from declarations.paths import ROOT
from tests.unit.test_layers import FLOORS

MODULE_LINES = 400
FUNCTION_LINES = 60
EXCLUDED = (ROOT / "benchmarks" / "peer_servers",)


def product_files(root: Path = ROOT) -> list[Path]:
    return sorted(
        path
        for package in FLOORS
        for path in (root / package).rglob("*.py")
        if not any(path.is_relative_to(excluded) for excluded in EXCLUDED)
    )


def oversized(path: Path, root: Path = ROOT) -> list[str]:
    """What in `path` is over a limit, one line each."""
    text = path.read_text()
    name = path.relative_to(root)
    found = []
    lines = len(text.splitlines())
    if lines > MODULE_LINES:
        found.append(f"{name}: {lines} lines (limit {MODULE_LINES})")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES:
                found.append(f"{name}:{node.lineno} {node.name}: {length} lines (limit {FUNCTION_LINES})")
    return found


def test_the_product_packages_are_checked() -> None:
    files = product_files()
    assert {p.relative_to(ROOT).parts[0] for p in files} == set(FLOORS)


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_within_the_size_limits(path: Path) -> None:
    assert oversized(path) == []


def test_the_check_sees_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    module = tmp_path / "m.py"
    module.write_text(f"def f():\n{body}\n" + "\n" * MODULE_LINES)
    assert oversized(module, tmp_path) == [
        f"m.py: {FUNCTION_LINES + 1 + MODULE_LINES} lines (limit {MODULE_LINES})",
        f"m.py:1 f: {FUNCTION_LINES + 1} lines (limit {FUNCTION_LINES})",
    ]
