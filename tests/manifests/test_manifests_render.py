"""Both kustomizations render offline, and their shape is what the docs and the other checks assume."""

from __future__ import annotations

import re

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


# How the docs build the image; the tag they build is the one both kustomizations must deploy.
BUILD_COMMAND = re.compile(r"minikube image build -t (\S+) \.")
DOCS = (ROOT / "README.md", ROOT / "docs" / "cluster.md")


def built_images() -> set[str]:
    """Every image the docs build (`minikube image build -t NAME:TAG .`), read from the docs themselves."""
    found = {image for doc in DOCS for image in BUILD_COMMAND.findall(doc.read_text())}
    assert found, f"no `minikube image build -t NAME:TAG .` in {[str(d.relative_to(ROOT)) for d in DOCS]}"
    return found


def _image(objects: list[Obj]) -> str:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]


def test_both_kustomizations_deploy_the_image_the_docs_build(base_objects: list[Obj], top_objects: list[Obj]) -> None:
    built = built_images()
    assert len(built) == 1, f"the docs build different images: {sorted(built)}"
    (image,) = built
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", f"the docs must build a pinned tag, not {image!r}"
    # `kubectl apply -k manifests` is the documented command; `-k .` adds a label and nothing else.
    assert _image(base_objects) == image, "kubectl apply -k manifests deploys an image the docs do not build"
    assert _image(top_objects) == image, "kubectl apply -k . deploys an image the docs do not build"


def test_the_image_tag_is_set_once_where_kustomize_applies_it() -> None:
    written = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
    image = written["spec"]["template"]["spec"]["containers"][0]["image"]
    assert ":" not in image, f"deployment.yaml writes a tag ({image!r}): the tag belongs in kustomization.yaml"
    entries = {i["name"]: i for i in _kustomization(MANIFESTS).get("images") or []}
    # kustomize matches `images[].name` against the image as written; a mismatch changes nothing, silently.
    assert image in entries, f"manifests/kustomization.yaml images: has no entry named {image!r}"
    assert "images" not in _kustomization(ROOT), "the root kustomization must not set the image a second time"


def test_top_level_is_the_base_plus_one_label(base_objects: list[Obj], top_objects: list[Obj]) -> None:
    assert _keys(top_objects) == _keys(base_objects)
    assert _kustomization(ROOT)["resources"] == ["manifests"]
    for base, top in zip(base_objects, top_objects, strict=True):
        base_labels = dict(base["metadata"].get("labels") or {})
        assert top["metadata"]["labels"] == {**base_labels, "app.kubernetes.io/managed-by": "kustomize"}
        assert {k: v for k, v in top.items() if k != "metadata"} == {k: v for k, v in base.items() if k != "metadata"}


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


USER_COMMANDS = ["helmfile sync", "kubectl apply -k manifests", "locust -f loadtest/locustfile.py"]


def _commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_the_docs_lead_with_the_users_three_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## On a cluster") :]
    first_block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert _commands(first_block) == USER_COMMANDS
    guide = (ROOT / "docs" / "cluster.md").read_text()
    assert _commands(guide.split("```sh\n", 1)[1].split("```", 1)[0]) == USER_COMMANDS
    # Every `kubectl apply|delete -k` in the docs names a kustomization that exists.
    for doc in (*DOCS, ROOT / "helmfile.yaml"):
        for target in re.findall(r"kubectl (?:apply|delete) -k ([\w./-]+)", doc.read_text()):
            assert (ROOT / target / "kustomization.yaml").is_file(), (doc.name, target)
