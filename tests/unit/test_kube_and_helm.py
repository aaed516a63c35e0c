"""The Kubernetes and Helm rules the local stack and tests/manifests share: selectors, value merging,
the helmfile's release, Prometheus durations."""

from __future__ import annotations

import pytest

from declarations.durations import seconds
from declarations.helm import chart_values, helm_merge, release
from declarations.manifests import RenderError
from declarations.selectors import selector_matches, service_selects

LABELS = {"app": "wine", "tier": "model"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, False),  # absent: nothing
        ({}, True),  # empty: everything
        ({"matchLabels": {"app": "wine"}}, True),
        ({"matchLabels": {"app": "beer"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["model", "web"]}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["model"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
    ],
)
def test_label_selector(selector, matches):
    assert selector_matches(selector, LABELS) is matches


def test_service_selector_is_a_plain_map_and_empty_selects_nothing():
    assert service_selects({"app": "wine"}, LABELS)
    assert not service_selects({"app": "wine", "x": "y"}, LABELS)
    assert not service_selects({}, LABELS) and not service_selects(None, LABELS)


def test_helm_merge_maps_merge_lists_replace_and_null_deletes():
    defaults = {"a": {"keep": 1, "drop": 2, "list": [1, 2]}, "b": 3}
    merged = helm_merge(defaults, {"a": {"drop": None, "list": [9], "new": {"x": 1}}, "b": None})
    assert merged == {"a": {"keep": 1, "list": [9], "new": {"x": 1}}}
    assert defaults == {"a": {"keep": 1, "drop": 2, "list": [1, 2]}, "b": 3}  # inputs untouched


def test_chart_values_merge_the_helmfiles_entries_in_order(tmp_path):
    (tmp_path / "base.yaml").write_text("grafana:\n  enabled: true\n  replicas: 2\nalertmanager: {}\n")
    helmfile = tmp_path / "helmfile.yaml"
    helmfile.write_text(
        "releases:\n"
        "  - name: other\n    chart: somewhere/other\n"
        "  - name: kps\n    chart: prometheus-community/kube-prometheus-stack\n"
        "    values:\n      - base.yaml\n      - grafana:\n          replicas: null\n"
    )
    assert release(helmfile)["name"] == "kps"
    assert chart_values(helmfile) == {"grafana": {"enabled": True}, "alertmanager": {}}
    helmfile.write_text(
        "releases:\n  - name: kps\n    chart: prometheus-community/kube-prometheus-stack\n    values: [gone.yaml]\n"
    )
    with pytest.raises(RenderError, match=r"values file that does not exist: gone\.yaml"):
        chart_values(helmfile)
    helmfile.write_text("releases: []\n")
    with pytest.raises(RenderError, match="exactly one kube-prometheus-stack release, found 0"):
        release(helmfile)


@pytest.mark.parametrize(("text", "value"), [("15s", 15), ("1m30s", 90), ("2h", 7200), ("500ms", 0.5)])
def test_durations(text, value):
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["15 s", "15", "s", "1.5s"])
def test_bad_duration(text):
    with pytest.raises(ValueError):
        seconds(text)
