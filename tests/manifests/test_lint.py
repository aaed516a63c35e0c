"""yamllint and hadolint are clean with the committed configuration (and would complain if they were not)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.manifests.deploy_spec import DOCKERFILE, ROOT, tool

YAMLLINT_CONFIG = ROOT / ".yamllint.yaml"


def _yamllint(*targets: str) -> subprocess.CompletedProcess[str]:
    # --strict: warnings (truthy values, comment spacing) fail too. From the root: the config's
    # ignore-from-file is resolved from the current directory.
    return subprocess.run(
        [tool("yamllint"), "--strict", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # --no-fail is not used and no config is passed: every rule, no ignores.
    return subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60)


def test_yamllint_is_clean() -> None:
    result = _yamllint(".")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_yamllint_lints_our_files_and_catches_a_fault(tmp_path: Path) -> None:
    listed = subprocess.run(
        [tool("yamllint"), "--list-files", "-c", str(YAMLLINT_CONFIG), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    files = set(listed.stdout.split())
    # The config's ignores must not hide the files this project is made of.
    for wanted in ("helmfile.yaml", "kustomization.yaml", "manifests/deployment.yaml", ".yamllint.yaml"):
        assert wanted in files or f"./{wanted}" in files, (wanted, sorted(files))
    bad = tmp_path / "bad.yaml"
    bad.write_text("enabled: yes \nkey: 1\nkey: 2\n")
    result = _yamllint(str(bad))
    assert result.returncode != 0
    for rule in ("truthy", "trailing-spaces", "key-duplicates"):
        assert f"({rule})" in result.stdout, result.stdout


def test_hadolint_is_clean_without_ignores() -> None:
    assert "hadolint ignore" not in DOCKERFILE.read_text()
    assert not list(ROOT.glob(".hadolint.y*ml")), "no hadolint config: every rule applies"
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_catches_a_fault(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3025"):
        assert rule in result.stdout, result.stdout
