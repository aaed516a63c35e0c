"""Where an alert sends the person it pages: its runbook section and the dashboard panel that shows it.

Two settings, each stated once here and written into every alert (and the dashboard's Runbooks link) by
`python -m alerts` and `python -m dashboard`:

- RUNBOOK_URL: the page that holds docs/runbooks.md, rendered with GitHub's heading anchors. Set it to where
  your copy lives (`https://github.com/<you>/<repo>/blob/main/docs/runbooks.md`, a wiki page with the same
  sections) and regenerate. The default is the copy the local stack serves (`make up`: the webhook sink on
  WEBHOOK_PORT's default renders docs/runbooks.md at /runbooks): the one address that answers for a user of
  this repository as cloned. A relative link is not one Alertmanager's receivers can open, a file:// path
  names one machine, and a repository host written here would be a guess at where you keep your copy.
- GRAFANA_URL: the Grafana that shows the provisioned dashboard. The default is the address both the local
  stack (GRAFANA_PORT's default) and the cluster instructions (`kubectl port-forward ... 3000:80`) give it.

The environment variables of the same names override both when generating, for a build that must not edit
this file; `make lint` then checks the committed files against the same environment.
"""

from __future__ import annotations

import json
import os
from functools import cache

from alerts import panels
from declarations import ports
from declarations.paths import DASHBOARD

DEFAULT_RUNBOOK_URL = f"http://127.0.0.1:{ports.WEBHOOK}/runbooks"
DEFAULT_GRAFANA_URL = f"http://127.0.0.1:{ports.GRAFANA}"
RUNBOOK_URL = os.environ.get("RUNBOOK_URL") or DEFAULT_RUNBOOK_URL
GRAFANA_URL = (os.environ.get("GRAFANA_URL") or DEFAULT_GRAFANA_URL).rstrip("/")

# The panel each alert's page should open on: the one that plots what the alert compares. The burn-rate
# alerts fire for either SLO: their `slo` label chooses the panel.
PANELS: dict[str, str | dict[str, str]] = {
    "WineClassifierErrorBudgetBurnFast": panels.BURN_RATE,
    "WineClassifierErrorBudgetBurnSlow": panels.BURN_RATE,
    "WineClassifierDown": panels.REQUESTS,
    "WineClassifierTargetDown": panels.IN_FLIGHT,
    "WineClassifierHttp5xxRatioHigh": panels.ERROR_RATIO,
    "WineClassifierLatencyP95High": panels.LATENCY,
    "WineClassifierInvalidInputRatioHigh": panels.INVALID_INPUTS,
    "WineClassifierInputFeatureBroken": panels.PSI_NOW,
    "WineClassifierInputDriftHigh": panels.PSI_WINDOW,
    "WineClassifierInputDriftModerate": panels.PSI_WINDOW,
    "WineClassifierPredictionDrift": panels.CLASS_SHARE,
    "WineClassifierConfidenceLow": panels.CONFIDENCE,
    "WineClassifierModelVersionMismatch": panels.MODEL_VERSION,
    "WineClassifierAccuracyLow": panels.ACCURACY,
    "WineClassifierCanaryWorse": panels.CANARY_ACCURACY,
}


def runbook_url(alert: str) -> str:
    # GitHub's anchor of a `## WineClassifierX` heading; the local copy's renderer gives the same ids.
    return f"{RUNBOOK_URL}#{alert.lower()}"


@cache
def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_id(title: str) -> int:
    found = [p["id"] for p in _dashboard()["panels"] if p.get("title") == title]
    if len(found) != 1:
        raise ValueError(f"{DASHBOARD.name} has {len(found)} panels titled {title!r}, not one")
    return found[0]


def dashboard_url(alert: str) -> str:
    """The dashboard on the alert's panel (Grafana's `viewPanel`), for the namespace and job that fired."""
    panel = PANELS[alert]
    if isinstance(panel, dict):
        # Annotations are Go templates: the label's value picks the panel when the alert fires.
        view = "".join(
            f'{{{{ if eq $labels.slo "{value}" }}}}{panel_id(title)}{{{{ end }}}}' for value, title in panel.items()
        )
    else:
        view = str(panel_id(panel))
    return (
        f"{GRAFANA_URL}/d/{_dashboard()['uid']}?viewPanel={view}"
        "&var-namespace={{ $labels.namespace }}&var-job={{ $labels.job }}"
    )
