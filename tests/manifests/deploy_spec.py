"""Names and small lookups shared by the tests of the cluster path (manifests, helmfile, Dockerfile)."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

from declarations.helm import CHART, HELMFILE
from declarations.manifests import MANIFESTS, ROOT, Obj, of_kind, one

__all__ = ["CHART", "HELMFILE", "MANIFESTS", "ROOT", "Obj", "of_kind", "one"]

DOCKERFILE = ROOT / "Dockerfile"
CHART_REPOSITORY = "https://prometheus-community.github.io/helm-charts"
APP = "wine-classifier"
APP_NAMESPACE = "ml-serving"
# The receiver of values/kube-prometheus-stack.yaml that every alert of the app must reach.
APP_RECEIVER = "ml-serving-oncall"
MONITORING_NAMESPACE = "monitoring"
KUBERNETES_VERSION = "1.32"
# THE command: the Dockerfile runs it, the Deployment must not override it (one way to start the server).
SERVE_COMMAND = ["gunicorn", "-c", "app/gunicorn.conf.py", "app.wsgi:app"]
# gunicorn's graceful_timeout when app/gunicorn.conf.py does not set a literal one (also gunicorn's default).
GRACEFUL_TIMEOUT_DEFAULT = 30
# The custom resources, checked against their CRD schemas (reference data, docs/testing.md: `$SHARED_DIR/crds/<file>`)
# instead of the Kubernetes schemas: prometheus-operator's and KEDA's.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "ScaledObject": "keda.sh_scaledobjects.yaml",
}


def tool(name: str) -> str:
    """A linter from the venv running the tests (where `pip install -e .[dev]` put it), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} not found next to {sys.executable} nor on PATH: pip install -e '.[dev]'"
    return found


def graceful_timeout() -> int:
    """gunicorn's graceful_timeout as app/gunicorn.conf.py sets it (a literal assignment), else the default."""
    conf = ROOT / "app" / "gunicorn.conf.py"
    if conf.is_file():
        found = re.search(r"^graceful_timeout\s*=\s*(\d+)\s*$", conf.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1))
    return GRACEFUL_TIMEOUT_DEFAULT


def served_get_paths(routes: Path = ROOT / "app" / "routes.py") -> set[str]:
    """Paths app/routes.py registers for GET (`@api.get("/x")`, `@api.route("/x")`), read without importing
    the app (importing it would load prometheus_client before any multiprocess setup)."""
    paths: set[str] = set()
    for node in ast.walk(ast.parse(routes.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)):
                continue
            if not (decorator.args and isinstance(decorator.args[0], ast.Constant)):
                continue
            verb = decorator.func.attr
            methods = {"GET"}
            if verb == "route":
                for kw in decorator.keywords:
                    if kw.arg == "methods":
                        methods = {m.value for m in kw.value.elts if isinstance(m, ast.Constant)}
            elif verb != "get":
                continue
            if "GET" in methods:
                paths.add(decorator.args[0].value)
    return paths


def master_paths(exposition: Path = ROOT / "app" / "exposition.py") -> set[str]:
    """Paths the master serves on the metrics port (`*_PATH = "/x"` in app/exposition.py), read without
    importing it, for the same reason as above."""
    paths: set[str] = set()
    for node in ast.parse(exposition.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if any(n.endswith("_PATH") for n in names) and str(node.value.value).startswith("/"):
                paths.add(node.value.value)
    return paths
