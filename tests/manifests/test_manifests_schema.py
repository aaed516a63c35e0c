"""Every rendered object validates strictly: core kinds against Kubernetes 1.32, custom resources against their
CRDs, prometheus-operator's and KEDA's (closed, since a CRD schema accepts unknown fields and the API server drops
them)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.manifests.deploy_spec import CRD_KINDS, KUBERNETES_VERSION, Obj, one
from tests.manifests.kube_logic import closed_schema


def _validate_core(obj: Obj) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@cache
def _crd_validator(shared_dir: Path, kind: str, api_version: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((shared_dir / "crds" / CRD_KINDS[kind]).read_text())
    group, _, version = api_version.partition("/")
    assert group == crd["spec"]["group"], f"{kind}: apiVersion group {group!r} is not the CRD's"
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{kind}: version {version!r} is not served by the CRD ({sorted(served)})"
    return jsonschema.Draft7Validator(closed_schema(served[version]["schema"]["openAPIV3Schema"]))


def _crd_errors(shared_dir: Path, obj: Obj) -> list[str]:
    validator = _crd_validator(shared_dir, obj["kind"], obj["apiVersion"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_core_objects_validate_strictly_against_kubernetes_1_32(base_objects: list[Obj]) -> None:
    failures = []
    core = [o for o in base_objects if o["kind"] not in CRD_KINDS]
    assert len(core) >= 7
    for obj in core:
        try:
            _validate_core(obj)
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.absolute_path))
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_kubernetes_strict_validation_rejects_an_unknown_field(base_objects: list[Obj]) -> None:
    deployment = copy.deepcopy(one(base_objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        _validate_core(deployment)


def test_kubernetes_validation_rejects_an_unknown_api_version(base_objects: list[Obj]) -> None:
    pdb = copy.deepcopy(one(base_objects, "PodDisruptionBudget"))
    pdb["apiVersion"] = "policy/v1beta1"  # removed in 1.25
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        _validate_core(pdb)


def test_custom_resources_validate_strictly_against_the_crds(shared_dir: Path, base_objects: list[Obj]) -> None:
    monitoring = [o for o in base_objects if o["kind"] in CRD_KINDS]
    assert {o["kind"] for o in monitoring} >= {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
    failures = {f"{o['kind']}/{o['metadata']['name']}": _crd_errors(shared_dir, o) for o in monitoring}
    assert not any(failures.values()), failures


@pytest.mark.parametrize(
    ("where", "typo"),
    [
        (["spec"], "namespaceSelectr"),
        (["spec", "endpoints", 0], "scrapeTimout"),
        (["spec", "selector"], "matchLabel"),
    ],
)
def test_closed_crd_schema_rejects_an_unknown_field(
    shared_dir: Path, base_objects: list[Obj], where: list[Any], typo: str
) -> None:
    monitor = copy.deepcopy(one(base_objects, "ServiceMonitor"))
    node: Any = monitor
    for step in where:
        node = node[step]
    node[typo] = "x"
    errors = _crd_errors(shared_dir, monitor)
    assert any(typo in e for e in errors), errors


@pytest.mark.parametrize(
    ("where", "typo"),
    [
        (["spec"], "minReplicas"),  # the HPA's spelling; KEDA's is minReplicaCount
        (["spec", "scaleTargetRef"], "namespace"),
        (["spec", "advanced", "horizontalPodAutoscalerConfig"], "scaleDown"),  # belongs under `behavior`
        (["spec", "triggers", 0], "threshold"),  # belongs under `metadata`
    ],
)
def test_closed_scaledobject_schema_rejects_a_misplaced_field(
    shared_dir: Path, base_objects: list[Obj], where: list[Any], typo: str
) -> None:
    scaled = copy.deepcopy(one(base_objects, "ScaledObject"))
    node: Any = scaled
    for step in where:
        node = node[step]
    node[typo] = "x"
    errors = _crd_errors(shared_dir, scaled)
    assert any(typo in e for e in errors), errors


def test_scaledobject_trigger_metadata_values_are_strings(shared_dir: Path, base_objects: list[Obj]) -> None:
    """KEDA reads trigger metadata as a map of strings: an unquoted `threshold: 150` is refused by the API."""
    scaled = copy.deepcopy(one(base_objects, "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 150
    assert any("threshold" in e for e in _crd_errors(shared_dir, scaled))


def test_the_open_crd_schema_would_have_let_the_typo_through(shared_dir: Path, base_objects: list[Obj]) -> None:
    """Why the schemas are closed: as shipped, a CRD schema accepts an unknown field."""
    crd = yaml.safe_load((shared_dir / "crds" / "monitoring.coreos.com_servicemonitors.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    monitor = copy.deepcopy(one(base_objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "5s"
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(monitor))
    assert list(jsonschema.Draft7Validator(closed_schema(schema)).iter_errors(monitor))


def test_closing_keeps_preserve_unknown_fields_subtrees_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "string"}}}},
        },
    }
    validator = jsonschema.Draft7Validator(closed_schema(schema))
    assert validator.is_valid({"open": {"anything": 1}, "list": [{"b": "x"}]})
    assert not validator.is_valid({"list": [{"c": "x"}]})
    assert not validator.is_valid({"extra": 1})
    assert "additionalProperties" not in schema, "closed_schema must not modify the CRD it was given"
