"""Grafana for the local stack, provisioned from files the way kube-prometheus-stack provisions it in a cluster.

In a cluster the chart's sidecars write two kinds of provisioning files into Grafana: a datasource file
(`grafana.sidecar.datasources`: Prometheus with uid `prometheus`, the default, plus Alertmanager) and a
dashboard provider (`sidecar.dashboards.provider`: a file provider reading the folder the sidecar fills with
every ConfigMap labelled `grafana_dashboard: "1"`). Locally the same two files point at the local
Prometheus and Alertmanager, and the provider reads `manifests/dashboards/` itself: the JSON the ConfigMap
is generated from. tests/unit/test_grafana.py holds these files to the chart's values.

Access: anonymous Viewer on 127.0.0.1 only. No admin account is created and the login form is off, so no
password exists anywhere. Grafana is not a Python package; when it is not installed the stack runs
without it and says, in one line, how to get it.
"""

from __future__ import annotations

import configparser
import copy
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from declarations import chart
from declarations.manifests import MANIFESTS

DASHBOARDS = MANIFESTS / "dashboards"
# What kube-prometheus-stack's defaults (grafana.sidecar.datasources) name the datasources it provisions, for
# when the chart is not there to render (declarations.chart's fallback); every panel of the dashboard reads
# `${datasource}`, a variable of type prometheus that defaults to this one.
PROMETHEUS_DATASOURCE = {"name": "Prometheus", "type": "prometheus", "uid": "prometheus"}
ALERTMANAGER_DATASOURCE = {"name": "Alertmanager", "type": "alertmanager", "uid": "alertmanager"}
# The grafana chart's sidecar.dashboards.provider defaults, under the names the provisioning file uses.
PROVIDER = {
    "name": "sidecarProvider",
    "orgId": 1,
    "folder": "",
    "folderUid": "",
    "type": "file",
    "disableDeletion": False,
    "allowUiUpdates": False,
}
INSTALL_HINT = (
    "grafana: not installed, so the dashboard is not served locally; to see it, install Grafana "
    "(https://grafana.com/grafana/download, or unpack its standalone tarball and set GRAFANA_HOME to that "
    "directory) and run `make up` again"
)


class GrafanaNotFound(RuntimeError):
    """GRAFANA_HOME or a grafana executable was given but is not a usable Grafana installation."""


@dataclass(frozen=True)
class Installation:
    executable: Path
    home: Path  # what Grafana calls its homepath: the directory holding conf/defaults.ini and public/

    def command(self, config: Path) -> list[str]:
        # `grafana server` since Grafana 10; `grafana-server` is the older, still shipped, entry point.
        if self.executable.name == "grafana-server":
            return [str(self.executable), "--homepath", str(self.home), "--config", str(config)]
        return [str(self.executable), "server", "--homepath", str(self.home), "--config", str(config)]


def _is_home(path: Path) -> bool:
    return (path / "conf" / "defaults.ini").is_file()


def find(environ: Mapping[str, str] = os.environ) -> Installation | None:
    """The Grafana to run: `$GRAFANA_HOME/bin/grafana[-server]`, else `grafana` / `grafana-server` on PATH."""
    if environ.get("GRAFANA_HOME"):
        home = Path(environ["GRAFANA_HOME"]).expanduser().resolve()
        for name in ("grafana", "grafana-server"):
            executable = home / "bin" / name
            if executable.is_file() and os.access(executable, os.X_OK) and _is_home(home):
                return Installation(executable, home)
        raise GrafanaNotFound(
            f"GRAFANA_HOME={home} is not a Grafana installation (no bin/grafana and conf/defaults.ini)"
        )
    for name in ("grafana", "grafana-server"):
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            real = Path(found).resolve()
            # Tarball and Homebrew layouts keep the home next to bin/; Debian and RPM packages in /usr/share/grafana.
            for home in (real.parent.parent, real.parent.parent / "share" / "grafana", Path("/usr/share/grafana")):
                if _is_home(home):
                    return Installation(Path(found), home)
            raise GrafanaNotFound(f"found {found} but not Grafana's home (conf/defaults.ini): set GRAFANA_HOME")
    return None


def dashboards(directory: Path = DASHBOARDS) -> dict[str, str]:
    """uid -> title of every dashboard the provider loads."""
    found = {}
    for path in sorted(directory.glob("*.json")):
        model = json.loads(path.read_text())
        found[model["uid"]] = model["title"]
    return found


def datasources(prometheus_url: str, alertmanager_url: str, scrape_interval: str) -> dict[str, Any]:
    """The chart's datasource provisioning (declarations.chart: its rendered ConfigMap, else the chart's defaults
    below), pointed at the local Prometheus and Alertmanager."""
    rendered = chart.grafana_datasources()
    if rendered:
        local = {"prometheus": prometheus_url, "alertmanager": alertmanager_url}
        sources = [copy.deepcopy(d) for d in rendered if d.get("type") in local]
        for source in sources:
            source["url"] = f"{local[source['type']]}/"
            if source["type"] == "prometheus":
                # The local stack may compress time: Grafana's minimum step follows its scrape interval.
                source.setdefault("jsonData", {})["timeInterval"] = scrape_interval
        return {"apiVersion": 1, "datasources": sources}
    return {
        "apiVersion": 1,
        "datasources": [
            {
                **PROMETHEUS_DATASOURCE,
                "url": f"{prometheus_url}/",
                "access": "proxy",
                "isDefault": True,
                "jsonData": {"httpMethod": "POST", "timeInterval": scrape_interval},
            },
            {
                **ALERTMANAGER_DATASOURCE,
                "url": f"{alertmanager_url}/",
                "access": "proxy",
                "jsonData": {"handleGrafanaManagedAlerts": False, "implementation": "prometheus"},
            },
        ],
    }


def provider(directory: Path = DASHBOARDS) -> dict[str, Any]:
    """The grafana chart's dashboard provider (declarations.chart: rendered when the grafana subchart is there,
    else its defaults restated in PROVIDER), reading `directory` instead of the folder the sidecar fills."""
    rendered = chart.grafana_dashboard_providers()
    if rendered:
        providers = copy.deepcopy(rendered)
        for entry in providers:
            entry.setdefault("options", {})["path"] = str(directory)
        return {"apiVersion": 1, "providers": providers}
    return {
        "apiVersion": 1,
        "providers": [
            {
                **PROVIDER,
                "updateIntervalSeconds": 30,
                "options": {"foldersFromFilesStructure": False, "path": str(directory)},
            }
        ],
    }


def settings(state: Path, port: int) -> dict[str, dict[str, str]]:
    """grafana.ini: where its files go, 127.0.0.1 only, anonymous Viewer, no admin, nothing fetched from outside."""
    return {
        "paths": {
            "data": str(state / "data"),
            "logs": str(state / "logs"),
            "plugins": str(state / "plugins"),
            "provisioning": str(state / "provisioning"),
        },
        "server": {"http_addr": "127.0.0.1", "http_port": str(port)},
        "security": {"disable_initial_admin_creation": "true"},
        "auth": {"disable_login_form": "true"},
        "auth.basic": {"enabled": "false"},
        "auth.anonymous": {"enabled": "true", "org_name": "Main Org.", "org_role": "Viewer"},
        "users": {"allow_sign_up": "false", "allow_org_create": "false"},
        "analytics": {"reporting_enabled": "false", "check_for_updates": "false", "check_for_plugin_updates": "false"},
        "news": {"news_feed_enabled": "false"},
        "plugins": {"preinstall_disabled": "true"},
        "log": {"mode": "console"},
    }


def write(state: Path, port: int, prometheus_url: str, alertmanager_url: str, scrape_interval: str) -> Path:
    """Write grafana.ini and the provisioning files under `state`; returns the grafana.ini path."""
    provisioning = state / "provisioning"
    for sub in ("datasources", "dashboards", "plugins", "alerting"):
        (provisioning / sub).mkdir(parents=True, exist_ok=True)
    (provisioning / "datasources" / "datasource.yaml").write_text(
        yaml.safe_dump(datasources(prometheus_url, alertmanager_url, scrape_interval), sort_keys=False)
    )
    (provisioning / "dashboards" / "provider.yaml").write_text(yaml.safe_dump(provider(), sort_keys=False))
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_dict(settings(state, port))
    config = state / "grafana.ini"
    with config.open("w") as f:
        ini.write(f)
    return config
