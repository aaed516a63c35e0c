"""declarations.chart on small charts made here: what it does without the chart, and with a subchart missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from declarations import chart
from declarations.helm import release
from declarations.manifests import RenderError

TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-probe
  namespace: {{ .Release.Namespace }}
data:
{{- if .Values.exporter.enabled }}
  exporter: {{ (index .Values "sub-exporter").rbac.enabled | quote }}
{{- else }}
  exporter: "off"
{{- end }}
"""


def _chart(root: Path, version: str = "88.5.3", with_subchart: bool = False) -> Path:
    """A stand-in kube-prometheus-stack whose template reads a subchart's defaults, as the real one does."""
    directory = root / chart.CHART_DIR
    (directory / "templates").mkdir(parents=True)
    meta = {
        "apiVersion": "v2",
        "name": "kube-prometheus-stack",
        "version": version,
        "dependencies": [{"name": "sub-exporter", "version": "1.0.0", "condition": "exporter.enabled"}],
    }
    (directory / "Chart.yaml").write_text(yaml.safe_dump(meta))
    (directory / "values.yaml").write_text(yaml.safe_dump({"exporter": {"enabled": True}, "sub-exporter": {}}))
    (directory / "templates" / "probe.yaml").write_text(TEMPLATE)
    if with_subchart:
        sub = directory / "charts" / "sub-exporter"
        (sub / "templates").mkdir(parents=True)
        sub_meta = {"apiVersion": "v2", "name": "sub-exporter", "version": "1.0.0"}
        (sub / "Chart.yaml").write_text(yaml.safe_dump(sub_meta))
        (sub / "values.yaml").write_text(yaml.safe_dump({"rbac": {"enabled": True}}))
    return directory


def _probe(objects: list[dict]) -> dict:
    (found,) = [o for o in objects if o["metadata"]["name"].endswith("-probe")]
    return found


def test_without_the_chart_nothing_is_rendered_and_the_source_says_why(tmp_path: Path) -> None:
    assert chart.rendered(tmp_path) is None
    assert chart.source(tmp_path).startswith(f"values fallback: no chart at {tmp_path / chart.CHART_DIR}")


def test_the_render_uses_the_helmfiles_release_name_and_namespace(tmp_path: Path) -> None:
    _chart(tmp_path, with_subchart=True)
    probe = _probe(chart.rendered(tmp_path))
    declared = release()
    assert probe["metadata"] == {"name": f"{declared['name']}-probe", "namespace": declared["namespace"]}
    assert probe["data"]["exporter"] == "true"  # the subchart's default reached the parent's template
    assert chart.source(tmp_path) == f"helm render of {(tmp_path / chart.CHART_DIR).resolve()}"


def test_a_missing_subchart_the_parent_needs_is_disabled_and_named(tmp_path: Path) -> None:
    _chart(tmp_path)
    assert chart.missing_subcharts(tmp_path / chart.CHART_DIR) == {"sub-exporter": "exporter.enabled"}
    assert _probe(chart.rendered(tmp_path))["data"]["exporter"] == "off"
    assert chart.source(tmp_path).endswith("(subcharts absent: sub-exporter; disabled for the render: sub-exporter)")


def test_another_chart_version_than_the_helmfile_pins_is_refused(tmp_path: Path) -> None:
    _chart(tmp_path, version="88.0.0")
    with pytest.raises(RenderError, match=r"pins kube-prometheus-stack 88\.5\.3, but .* holds 88\.0\.0"):
        chart.rendered(tmp_path)


def test_the_fallback_prometheus_object_follows_the_values() -> None:
    derived = chart.prometheus_from_values()
    declared = release()
    assert derived["metadata"] == {"name": f"{declared['name']}-prometheus", "namespace": declared["namespace"]}
    for kind in ("serviceMonitor", "rule"):
        assert derived["spec"][f"{kind}Selector"] == {"matchLabels": {"release": declared["name"]}}
