"""Both kustomizations render offline, and their shape is what the docs and the other checks assume."""

from __future__ import annotations

import yaml

from tests.manifests.deploy_spec import APP, APP_NAMESPACE, MANIFESTS, ROOT, Obj, of_kind, one

# kind -> the file in manifests/ that holds it ("one object per file, named after what it holds").
EXPECTED_FILES = {
    "Namespace": "namespace.yaml",
    "ServiceAccount": "serviceaccount.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
    "ServiceMonitor": "servicemonitor.yaml",
    "PrometheusRule": "prometheusrule.yaml",
    "PodDisruptionBudget": "poddisruptionbudget.yaml",
    "HorizontalPodAutoscaler": "horizontalpodautoscaler.yaml",
    "NetworkPolicy": "networkpolicy.yaml",
}
CLUSTER_SCOPED = {"Namespace"}


def _kustomization(directory) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def _keys(objects: list[Obj]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_base_renders_every_expected_object(base_objects: list[Obj]) -> None:
    for kind in EXPECTED_FILES:
        assert len(of_kind(base_objects, kind)) == 1, kind
    assert of_kind(base_objects, "ConfigMap"), "the dashboard ConfigMap is not generated"


def test_one_object_per_file_named_after_its_kind() -> None:
    resources = _kustomization(MANIFESTS)["resources"]
    assert sorted(resources) == sorted(EXPECTED_FILES.values())
    for kind, filename in EXPECTED_FILES.items():
        docs = [d for d in yaml.safe_load_all((MANIFESTS / filename).read_text()) if d]
        assert len(docs) == 1, f"{filename} holds {len(docs)} objects"
        assert docs[0]["kind"] == kind, f"{filename} holds a {docs[0]['kind']}, not a {kind}"


def test_the_generated_dashboard_configmap_and_prometheusrule_stay_wired() -> None:
    kustomization = _kustomization(MANIFESTS)
    assert "prometheusrule.yaml" in kustomization["resources"]
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    dashboard = generated[f"{APP}-dashboard"]
    # A hash suffix would change the name on every edit and leave old dashboards behind in the cluster.
    assert dashboard["options"]["disableNameSuffixHash"] is True
    for entry in dashboard["files"]:
        assert (MANIFESTS / entry.split("=")[-1]).is_file(), entry


def test_every_namespaced_object_lands_in_the_app_namespace(base_objects: list[Obj]) -> None:
    assert one(base_objects, "Namespace", APP_NAMESPACE)
    for obj in base_objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"].get("namespace") == APP_NAMESPACE, (obj["kind"], obj["metadata"]["name"])


def test_top_level_composes_the_base_and_pins_the_image(base_objects: list[Obj], top_objects: list[Obj]) -> None:
    assert _keys(top_objects) == _keys(base_objects)
    kustomization = _kustomization(ROOT)
    assert kustomization["resources"] == ["manifests"]
    base_image = one(base_objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    entries = {i["name"]: i for i in kustomization["images"]}
    # kustomize matches `images[].name` against the image as written; a mismatch changes nothing, silently.
    assert base_image in entries, f"images: has no entry named {base_image!r} (the Deployment's image)"
    image = one(top_objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    name, _, tag = image.rpartition(":")
    assert name == entries[base_image].get("newName", base_image)
    assert tag == str(entries[base_image]["newTag"])
    assert tag and tag != "latest", f"the top level must pin a tag, got {image!r}"


def test_labels_not_common_labels_and_selectors_untouched(base_objects, top_objects) -> None:
    for directory in (ROOT, MANIFESTS):
        kustomization = _kustomization(directory)
        assert "commonLabels" not in kustomization, f"{directory}: commonLabels is deprecated and rewrites selectors"
        assert kustomization.get("labels"), f"{directory}: no `labels:`"
        for entry in kustomization["labels"]:
            assert entry.get("includeSelectors", False) is False
    # A Deployment's selector is immutable: labels added to it later would make `kubectl apply` fail.
    for objects in (base_objects, top_objects):
        deployment = one(objects, "Deployment")
        assert deployment["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": APP}}
    added = one(top_objects, "Service")["metadata"]["labels"]
    assert added.get("app.kubernetes.io/managed-by") == "kustomize"
    assert added.get("app.kubernetes.io/part-of") == "ml-observability"
