"""Rendering the kustomize manifests and picking objects out of them: the one way every tool reads them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from declarations.paths import CANARY, LOADTEST, MANIFESTS, ROOT

__all__ = ["CANARY", "LOADTEST", "MANIFESTS", "ROOT", "Obj", "RenderError", "of_kind", "one", "render", "rule_groups"]

Obj = dict[str, Any]


class RenderError(RuntimeError):
    pass


def render(path: Path = MANIFESTS) -> list[Obj]:
    """`kubectl kustomize PATH`, parsed. Raises RenderError with kustomize's own message."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl is not on PATH: install kubectl (1.32+, it carries kustomize) to render manifests")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RenderError(f"`kubectl kustomize {path}` failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    """The one object of `kind` (named `name`, when given); anything else is a RenderError."""
    found = [o for o in of_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    if len(found) != 1:
        named = f" named {name}" if name else ""
        raise RenderError(f"expected exactly one {kind}{named} in the manifests, found {len(found)}")
    return found[0]


def rule_groups(objects: Iterable[Obj]) -> dict[str, Any]:
    """The rule file Prometheus loads: every PrometheusRule's `spec.groups`, as plain `groups:`."""
    groups: list[Obj] = []
    for rule in of_kind(objects, "PrometheusRule"):
        groups.extend(rule["spec"].get("groups", []))
    return {"groups": groups}
