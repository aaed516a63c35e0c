"""The canary overlay (`kubectl apply -k canary`): the base unchanged plus one Deployment that the same Service
and ServiceMonitor pick up, on its own track, image and model."""

from __future__ import annotations

import copy
import re
import shlex

import kubernetes_validate
import pytest

from declarations.manifests import render
from declarations.selectors import selector_matches, service_selects
from declarations.targets import targets
from offcluster.pods import TRAIN_ARGS_ANNOTATION
from tests.manifests.deploy_spec import DOCKERFILE, KUBERNETES_VERSION, ROOT, Obj, of_kind, one

CANARY = ROOT / "canary"
STABLE_NAME = "wine-classifier"
CANARY_NAME = "wine-classifier-canary"


@pytest.fixture(scope="module")
def canary_objects() -> list[Obj]:
    return render(CANARY)


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_the_canary_is_the_base_plus_one_deployment(base_objects: list[Obj], canary_objects: list[Obj]) -> None:
    base = {_key(o): o for o in base_objects}
    canary = {_key(o): o for o in canary_objects}
    assert set(canary) - set(base) == {("Deployment", CANARY_NAME)}
    assert set(base) <= set(canary)
    # Everything the base applies is applied unchanged: rolling out the canary does not restart stable.
    for key, obj in base.items():
        assert canary[key] == obj, key


def test_the_canary_pod_is_the_stable_pod_but_for_track_image_and_model(canary_objects: list[Obj]) -> None:
    stable, canary = one(canary_objects, "Deployment", STABLE_NAME), one(canary_objects, "Deployment", CANARY_NAME)
    assert canary["spec"]["replicas"] == 1
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    same = copy.deepcopy(canary["spec"]["template"])
    same["metadata"]["labels"]["track"] = "stable"
    same["metadata"].pop("annotations")
    for constraint in same["spec"].get("topologySpreadConstraints", []):
        constraint["labelSelector"]["matchLabels"].pop("track", None)
    container = same["spec"]["containers"][0]
    stable_image = stable["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == f"{stable_image}-canary"
    container["image"] = stable_image
    assert same == stable["spec"]["template"]


def test_the_same_service_and_servicemonitor_reach_both_tracks(canary_objects: list[Obj]) -> None:
    service, monitor = one(canary_objects, "Service"), one(canary_objects, "ServiceMonitor")
    assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
    for deployment in of_kind(canary_objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service_selects(service["spec"]["selector"], labels), deployment["metadata"]["name"]
        assert labels["app.kubernetes.io/name"] == STABLE_NAME
    # `track` reaches every series: the ServiceMonitor copies it from the pod.
    assert "track" in monitor["spec"]["podTargetLabels"]
    pods = {t.pod_name: t.pod_template["metadata"]["labels"]["track"] for t in targets(canary_objects)}
    assert sorted(pods.values()) == ["canary", "stable", "stable"]
    assert all(re.fullmatch(rf"{CANARY_NAME}-\w{{10}}-\w{{5}}", p) for p, track in pods.items() if track == "canary")


def test_the_two_deployments_never_claim_each_others_pods(canary_objects: list[Obj]) -> None:
    stable, canary = one(canary_objects, "Deployment", STABLE_NAME), one(canary_objects, "Deployment", CANARY_NAME)
    # The stable selector (immutable once applied) does match canary pods; the canary's must not match stable's.
    assert not selector_matches(canary["spec"]["selector"], stable["spec"]["template"]["metadata"]["labels"])
    assert selector_matches(canary["spec"]["selector"], canary["spec"]["template"]["metadata"]["labels"])
    # The ScaledObject and the PDB stay as in the base: the ScaledObject scales stable only.
    (scaled,) = [o for o in canary_objects if o["kind"] == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == STABLE_NAME


def test_the_canary_model_is_trained_as_its_image_is_built(canary_objects: list[Obj]) -> None:
    canary = one(canary_objects, "Deployment", CANARY_NAME)
    args = shlex.split(canary["spec"]["template"]["metadata"]["annotations"][TRAIN_ARGS_ANNOTATION])
    assert args and args != ["--seed", "42"]
    dockerfile = DOCKERFILE.read_text()
    # The image serves what these arguments train: tests/image builds it and compares the versions.
    assert "ARG TRAIN_ARGS" in dockerfile and "python -m app.train --out /opt/model $TRAIN_ARGS" in dockerfile
    # The build command the overlay documents passes exactly these arguments and the tag it deploys.
    documented = (CANARY / "deployment" / "kustomization.yaml").read_text()
    image = canary["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f'--build-arg TRAIN_ARGS="{shlex.join(args)}" -t {image} .' in documented


def test_the_canary_deployment_validates_strictly(canary_objects: list[Obj]) -> None:
    kubernetes_validate.validate(one(canary_objects, "Deployment", CANARY_NAME), KUBERNETES_VERSION, strict=True)


def test_rolling_back_deletes_exactly_the_canary_deployment() -> None:
    # `kubectl delete -k canary/deployment` is docs/canary.md's roll-back: it must name nothing but the canary.
    assert [_key(o) for o in render(CANARY / "deployment")] == [("Deployment", CANARY_NAME)]
