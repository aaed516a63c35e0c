"""The local Grafana's files and command line, held to the charts' values. Grafana itself is not installed
here: the fake executables below are empty files that only give `find` a layout to locate, never run."""

from __future__ import annotations

import configparser
import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from declarations import chart, ports
from declarations.helm import CHART_VALUES, GRAFANA_CHART_VALUES, chart_values, helm_merge
from declarations.manifests import MANIFESTS, ROOT
from offcluster import grafana
from offcluster.__main__ import stack_from_env
from offcluster.config import Ports
from offcluster.stack import Stack, StackError
from offcluster.supervisor import NotReady

PROMETHEUS_URL, ALERTMANAGER_URL = "http://127.0.0.1:19090", "http://127.0.0.1:19093"


@pytest.fixture()
def written(tmp_path: Path) -> Path:
    grafana.write(tmp_path, 13000, PROMETHEUS_URL, ALERTMANAGER_URL, "15s")
    return tmp_path


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _fake_grafana(root: Path, name: str = "grafana") -> Path:
    """A Grafana install layout (bin/<name>, conf/defaults.ini) whose executable only records the arguments it
    was given and fails: it lets `find` locate it and shows what the stack would run, and serves nothing."""
    (root / "bin").mkdir(parents=True)
    (root / "conf").mkdir()
    (root / "conf" / "defaults.ini").write_text("")
    executable = root / "bin" / name
    executable.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {root / 'argv'}\nexit 1\n")
    executable.chmod(0o755)
    return executable


def test_the_datasource_is_the_charts_and_the_dashboards(written, chart_objects):
    rendered = {d["type"]: d for d in chart.grafana_datasources(chart_objects)}
    sources = {d["type"]: d for d in _yaml(written / "provisioning" / "datasources" / "datasource.yaml")["datasources"]}
    prometheus = sources["prometheus"]
    for kind, url in (("prometheus", PROMETHEUS_URL), ("alertmanager", ALERTMANAGER_URL)):
        # What the chart provisions in a cluster, pointed at the local process; the step follows the local scrape.
        expected = copy.deepcopy(rendered[kind])
        expected["url"] = f"{url}/"
        if kind == "prometheus":
            expected["jsonData"]["timeInterval"] = "15s"
        assert sources[kind] == expected
    assert prometheus["isDefault"] is True
    # Without the chart the same file comes from the chart's defaults restated in offcluster.grafana.
    assert (prometheus["uid"], prometheus["name"]) == (
        grafana.PROMETHEUS_DATASOURCE["uid"],
        grafana.PROMETHEUS_DATASOURCE["name"],
    )
    # The dashboard reads `${datasource}`, a datasource variable of this type, which defaults to the default one.
    for path in (MANIFESTS / "dashboards").glob("*.json"):
        model = json.loads(path.read_text())
        variable = next(v for v in model["templating"]["list"] if v["name"] == "datasource")
        assert variable["type"] == "datasource" and variable["query"] == prometheus["type"]
        current = (variable.get("current") or {}).get("value")
        assert current in (None, "", prometheus["uid"]), f"{path.name} expects datasource {current!r}"
        for panel in model["panels"]:
            if panel.get("datasource"):
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_the_provider_is_the_sidecars_reading_the_dashboards_the_configmap_ships(written, shared_dir, chart_objects):
    defaults = _yaml(shared_dir / GRAFANA_CHART_VALUES)
    parent = _yaml(shared_dir / CHART_VALUES).get("grafana") or {}
    values = helm_merge(helm_merge(defaults, parent), chart_values().get("grafana") or {})
    declared = values["sidecar"]["dashboards"]["provider"]
    (provider,) = _yaml(written / "provisioning" / "dashboards" / "provider.yaml")["providers"]
    assert provider["name"] == declared["name"] and provider["orgId"] == declared["orgid"]
    assert (provider["folder"], provider["folderUid"], provider["type"]) == (
        declared["folder"],
        declared["folderUid"],
        declared["type"],
    )
    assert provider["disableDeletion"] == declared["disableDelete"]
    assert provider["allowUiUpdates"] == declared["allowUiUpdates"]
    assert provider["updateIntervalSeconds"] == (declared.get("updateIntervalSeconds") or 30)  # the template's default
    assert provider["options"]["foldersFromFilesStructure"] == declared["foldersFromFilesStructure"]
    # Instead of the folder the sidecar fills from ConfigMaps, the directory the ConfigMap is generated from.
    path = Path(provider["options"]["path"])
    assert path == MANIFESTS / "dashboards"
    generator = _yaml(MANIFESTS / "kustomization.yaml")["configMapGenerator"]
    shipped = {MANIFESTS / f.split("=")[-1] for g in generator for f in g.get("files", []) if f.endswith(".json")}
    assert shipped and shipped <= set(path.glob("*.json"))
    # With the grafana subchart under the chart's charts/, the provider Helm renders, but for the path.
    rendered = chart.grafana_dashboard_providers(chart_objects)
    print(f"\ndashboard provider: {'rendered' if rendered else 'the grafana chart defaults (subchart not rendered)'}")
    if rendered:
        assert [{**p, "options": {**p["options"], "path": str(path)}} for p in rendered] == [provider]


def test_anonymous_viewer_on_localhost_and_no_password(written):
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(written / "grafana.ini")
    assert dict(ini["server"]) == {"http_addr": "127.0.0.1", "http_port": "13000"}
    assert dict(ini["auth.anonymous"]) == {"enabled": "true", "org_name": "Main Org.", "org_role": "Viewer"}
    # No admin account at all, and no form or basic auth to log in with.
    assert ini["security"]["disable_initial_admin_creation"] == "true"
    assert ini["auth"]["disable_login_form"] == "true" and ini["auth.basic"]["enabled"] == "false"
    assert ini["paths"]["provisioning"] == str(written / "provisioning")
    for path in written.rglob("*"):
        if path.is_file():
            assert "password" not in path.read_text().lower(), path


def test_the_command_line_for_each_layout(tmp_path, monkeypatch):
    config = tmp_path / "grafana.ini"
    home = tmp_path / "grafana-13.2.0"
    executable = _fake_grafana(home)
    found = grafana.find({"PATH": str(home / "bin")})
    assert found == grafana.Installation(executable, home)
    assert found.command(config) == [str(executable), "server", "--homepath", str(home), "--config", str(config)]
    assert grafana.find({"GRAFANA_HOME": str(home), "PATH": ""}) == found
    older = _fake_grafana(tmp_path / "old", "grafana-server")
    assert grafana.find({"PATH": str(older.parent)}).command(config) == [
        str(older), "--homepath", str(tmp_path / "old"), "--config", str(config),
    ]  # fmt: skip
    assert grafana.find({"PATH": str(tmp_path / "nothing")}) is None
    with pytest.raises(grafana.GrafanaNotFound, match=r"GRAFANA_HOME=.* is not a Grafana installation"):
        grafana.find({"GRAFANA_HOME": str(tmp_path / "nothing"), "PATH": ""})


def test_the_stack_runs_the_grafana_it_finds_on_its_port(tmp_path, monkeypatch):
    executable = _fake_grafana(tmp_path / "grafana")
    monkeypatch.setenv("PATH", f"{executable.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("GRAFANA_HOME", raising=False)
    stack = Stack(tmp_path / "state", Ports(grafana=13001))
    (service,) = [s for s in stack.services() if s.name == "grafana"]
    assert service.command == grafana.Installation(executable, tmp_path / "grafana").command(
        stack.grafana_dir / "grafana.ini"
    )
    assert service.ready_url == "http://127.0.0.1:13001/api/health" and service.ports == (13001,)
    assert stack.urls["dashboard wine-classifier"] == "http://127.0.0.1:13001/d/wine-classifier"
    # Started the way the stack starts every process: it gets exactly that command line, and the files it names.
    stack.write_config()
    with pytest.raises(NotReady, match="grafana did not become ready"):
        stack.supervisor.start(service, timeout=5)
    argv = (tmp_path / "grafana" / "argv").read_text().splitlines()
    assert argv == service.command[1:]
    config = Path(argv[argv.index("--config") + 1])
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(config)
    assert ini["server"]["http_port"] == "13001"
    assert (Path(ini["paths"]["provisioning"]) / "datasources" / "datasource.yaml").is_file()
    monkeypatch.setenv("GRAFANA_HOME", str(tmp_path / "nothing"))
    with pytest.raises(StackError, match="GRAFANA_HOME"):
        Stack(tmp_path / "state", Ports())


def test_without_grafana_one_line_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAFANA_HOME", raising=False)
    stack = Stack(tmp_path, Ports())
    if stack.grafana is not None:
        pytest.skip(f"a Grafana is installed at {stack.grafana.executable}")
    assert not [name for name in stack.urls if name.startswith(("grafana", "dashboard"))]
    assert "grafana" not in [s.name for s in stack.services()]
    assert "\n" not in grafana.INSTALL_HINT and "GRAFANA_HOME" in grafana.INSTALL_HINT
    assert "https://grafana.com/grafana/download" in grafana.INSTALL_HINT


def test_grafana_port_comes_from_the_environment_and_the_makefile(monkeypatch):
    monkeypatch.delenv("GRAFANA_PORT", raising=False)
    assert stack_from_env().ports.grafana == ports.GRAFANA == 3000
    # `make` exports the variable empty when the user sets none: the default still applies.
    monkeypatch.setenv("GRAFANA_PORT", "")
    assert stack_from_env().ports.grafana == ports.GRAFANA
    monkeypatch.setenv("GRAFANA_PORT", "3123")
    assert stack_from_env().ports.grafana == 3123
    makefile = (ROOT / "Makefile").read_text()
    # The default is stated once, in declarations/ports.py: the Makefile passes on only what the user set.
    assert "GRAFANA_PORT ?=" not in makefile and "GRAFANA_PORT :=" not in makefile
    exported = next(line for line in makefile.splitlines() if line.startswith("export APP_PORT"))
    assert "GRAFANA_PORT" in exported.split()
