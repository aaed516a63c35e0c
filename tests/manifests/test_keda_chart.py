"""helmfile.yaml's KEDA release: pinned, installed with `wait`, its values known to the chart, and rendered by Helm
into the operator, metrics API server and webhooks this project's ScaledObject needs, sized for a laptop."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from declarations.manifests import RenderError
from tests.manifests.deploy_spec import HELMFILE, Obj, one
from tests.manifests.keda_release import (
    KEDA_CHART,
    KEDA_CHART_DIR,
    KEDA_REPOSITORY,
    keda_release,
    keda_rendered,
    keda_values,
)
from tests.manifests.kube_logic import closed_schema, pod_security_findings, unknown_keys
from tests.manifests.test_helm_values import _secret_like

KEDA_NAMESPACE = "keda"
# ResourceRequirements are Kubernetes', not the chart's: any resource name may go there.
FREE_FORM = ("resources.*",)
# What the chart's images set themselves: they run as a non-root user the image declares (runAsNonRoot makes
# the kubelet refuse root), so the pod spec names no uid. The chart leaves CPU limits at 1 CPU.
CHART_OWNED_FINDINGS = ("runAsUser is not a numeric non-root uid",)


@pytest.fixture(scope="module")
def keda_defaults(shared_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((shared_dir / KEDA_CHART_DIR / "values.yaml").read_text())


@pytest.fixture(scope="module")
def keda_objects(shared_dir: Path) -> list[Obj]:
    return keda_rendered(shared_dir)


def test_helmfile_pins_the_keda_chart_in_its_own_namespace(helmfile: dict[str, Any], shared_dir: Path) -> None:
    release = keda_release()
    chart_meta = yaml.safe_load((shared_dir / KEDA_CHART_DIR / "Chart.yaml").read_text())
    repo, _, name = release["chart"].partition("/")
    assert {r["name"]: r["url"] for r in helmfile["repositories"]}.get(repo) == KEDA_REPOSITORY
    assert name == KEDA_CHART
    # The reference chart (and the ScaledObject CRD the schema test reads) are those of this exact version.
    assert str(release["version"]) == chart_meta["version"] == chart_meta["appVersion"] == "2.20.2"
    assert release["namespace"] == KEDA_NAMESPACE and release["createNamespace"] is True


def test_every_release_waits_so_apply_k_finds_the_crds(helmfile: dict[str, Any]) -> None:
    """`helmfile sync` returns only when every release with `wait` is ready: ServiceMonitor, PrometheusRule
    and ScaledObject are all served when `kubectl apply -k manifests` runs next."""
    for release in helmfile["releases"]:
        assert release.get("wait") is True, release["name"]


def test_every_keda_value_is_a_key_the_chart_knows(keda_defaults: dict[str, Any]) -> None:
    assert not unknown_keys(keda_values(), [keda_defaults], FREE_FORM)


@pytest.mark.parametrize(
    ("path", "typo"),
    [((), "resource"), (("resources",), "metricsServer"), (("image",), "pullPolicyy")],
)
def test_a_misspelt_keda_key_is_caught(keda_defaults: dict[str, Any], path: tuple[str, ...], typo: str) -> None:
    broken = copy.deepcopy(keda_values())
    node = broken
    for key in path:
        node = node.setdefault(key, {})
    node[typo] = {"x": 1}
    problems = unknown_keys(broken, [keda_defaults], FREE_FORM)
    assert [p for p in problems if p.startswith(".".join((*path, typo)) + ":")], problems


def test_no_credential_in_the_keda_values() -> None:
    assert not _secret_like(keda_values())


def _deployments(objects: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}


def test_the_render_runs_the_three_components_in_the_release_namespace(keda_objects: list[Obj]) -> None:
    deployments = _deployments(keda_objects)
    assert set(deployments) == {"keda-operator", "keda-operator-metrics-apiserver", "keda-admission-webhooks"}
    assert {d["metadata"]["namespace"] for d in deployments.values()} == {KEDA_NAMESPACE}
    # The metrics API server is how the HPA KEDA makes reads the trigger's value.
    (api,) = [o for o in keda_objects if o["kind"] == "APIService"]
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert api["spec"]["service"] == {
        "name": "keda-operator-metrics-apiserver",
        "namespace": KEDA_NAMESPACE,
        "port": 443,
    }


def test_the_scaledobject_validates_against_the_crd_the_chart_installs(keda_objects, base_objects) -> None:
    """The schema test reads the reference CRD file; the chart's own template of it is what a cluster gets,
    and it differs (it bounds stabilizationWindowSeconds, 0..3600, where the file does not): both must accept
    the ScaledObject, closed."""
    (crd,) = [
        o
        for o in keda_objects
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["names"]["kind"] == "ScaledObject"
    ]
    scaled = one(base_objects, "ScaledObject")
    group, _, version = scaled["apiVersion"].partition("/")
    assert group == crd["spec"]["group"]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    validator = jsonschema.Draft7Validator(closed_schema(served["schema"]["openAPIV3Schema"]))
    assert not [e.message for e in validator.iter_errors(scaled)]
    # The bound the reference file lacks is enforced here.
    too_long = copy.deepcopy(scaled)
    too_long["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"
    ] = 7200
    assert not validator.is_valid(too_long)


def test_sized_for_a_laptop_and_pinned(keda_objects: list[Obj]) -> None:
    values = keda_values()
    for name, deployment in _deployments(keda_objects).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].endswith(":2.20.2"), container["image"]
        assert container["imagePullPolicy"] == values["image"]["pullPolicy"] == "IfNotPresent"
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        assert requests["cpu"] != "100m" and requests["memory"] != "100Mi", f"{name}: the chart's default requests"
        assert limits["memory"] != "1000Mi", f"{name}: the chart's default memory limit"


def test_the_render_meets_the_pod_baseline(keda_objects: list[Obj]) -> None:
    for name, deployment in _deployments(keda_objects).items():
        findings = pod_security_findings(deployment["spec"]["template"]["spec"])
        assert not [f for f in findings if not any(owned in f for owned in CHART_OWNED_FINDINGS)], (name, findings)


def test_the_laptop_sizing_check_can_fail(shared_dir: Path, tmp_path: Path) -> None:
    """With the release's values left out, the chart's server-sized defaults are what renders."""
    spec = yaml.safe_load(HELMFILE.read_text())
    for declared in spec["releases"]:
        declared["values"] = (
            [] if declared["name"] == KEDA_CHART else [str(HELMFILE.parent / v) for v in declared["values"]]
        )
    helmfile = tmp_path / "helmfile.yaml"
    helmfile.write_text(yaml.safe_dump(spec))
    defaults_only = keda_rendered(shared_dir, helmfile)
    (container,) = _deployments(defaults_only)["keda-operator"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "100m"


def test_another_keda_version_than_the_helmfile_pins_is_refused(shared_dir: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load(HELMFILE.read_text())
    for declared in spec["releases"]:
        declared["values"] = [str(HELMFILE.parent / v) for v in declared["values"]]
        if declared["name"] == KEDA_CHART:
            declared["version"] = "2.19.0"
    helmfile = tmp_path / "helmfile.yaml"
    helmfile.write_text(yaml.safe_dump(spec))
    with pytest.raises(RenderError, match=r"pins keda 2\.19\.0, but .* holds 2\.20\.2"):
        keda_rendered(shared_dir, helmfile)
