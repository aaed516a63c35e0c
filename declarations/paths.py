"""Where the project's files are: the repository root, computed here once, and the declarations under it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
# The canary overlay: manifests/ plus a canary Deployment (`kubectl apply -k canary`).
CANARY = ROOT / "canary"
# The load test in the cluster: a locust master and workers (`kubectl apply -k loadtest`).
LOADTEST = ROOT / "loadtest"
HELMFILE = ROOT / "helmfile.yaml"
# The generated dashboard, as the ConfigMap ships it.
DASHBOARD = MANIFESTS / "dashboards" / "wine-classifier.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
