"""The default local ports, stated once: the local stack listens on them (each overridden by its environment
variable, as `make` passes it), and the alerts' default links point at them. Grafana's is also where the
port-forward of docs/cluster.md puts the cluster's Grafana.

The app's ports are not here: they are what manifests/deployment.yaml declares (`PORT`, `METRICS_PORT`).
"""

from __future__ import annotations

import os

PROMETHEUS = 9090
ALERTMANAGER = 9093
# The webhook sink that receives every alert and serves docs/runbooks.md at /runbooks.
WEBHOOK = 9095
GRAFANA = 3000
# The locust master's web UI and /metrics during the local stack's load (loadtest/master.yaml declares it).
LOCUST = 8089

# The environment variable that overrides each default.
VARIABLES = {
    "PROMETHEUS_PORT": PROMETHEUS,
    "ALERTMANAGER_PORT": ALERTMANAGER,
    "WEBHOOK_PORT": WEBHOOK,
    "GRAFANA_PORT": GRAFANA,
    "LOCUST_PORT": LOCUST,
}


def from_env(name: str) -> int:
    """The port the environment variable `name` gives; unset or empty, its default."""
    value = os.environ.get(name)
    return int(value) if value else VARIABLES[name]
