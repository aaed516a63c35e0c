"""The pod runs unprivileged on a read-only root filesystem, the image agrees with the manifests, and no
Secret is committed."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from typing import Any

import yaml

from tests.manifests.deploy_spec import APP_NAMESPACE, DOCKERFILE, MANIFESTS, ROOT, SERVE_COMMAND, Obj, of_kind, one
from tests.manifests.kube_logic import pod_security_findings

BASE_IMAGE = "python:3.11-slim-bookworm"


# ---- the pod ----------------------------------------------------------------------------------------------


def _pod_spec(objects: list[Obj]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def test_pod_meets_the_security_baseline(base_objects: list[Obj]) -> None:
    assert pod_security_findings(_pod_spec(base_objects)) == []


def test_the_baseline_check_finds_each_gap(base_objects: list[Obj]) -> None:
    spec = copy.deepcopy(_pod_spec(base_objects))
    spec["securityContext"] = {"runAsUser": 0}
    container = spec["containers"][0]
    container["securityContext"] = {"capabilities": {"drop": ["NET_RAW"]}}
    del container["resources"]["limits"]
    findings = "\n".join(pod_security_findings(spec))
    for gap in (
        "runAsNonRoot",
        "runAsUser",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "drop ALL",
        "seccompProfile",
        "no cpu limit",
        "no memory limit",
    ):
        assert gap in findings, (gap, findings)


def test_namespace_enforces_the_restricted_pod_security_standard(base_objects: list[Obj]) -> None:
    labels = one(base_objects, "Namespace", APP_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_secret_is_committed(base_objects: list[Obj], top_objects: list[Obj]) -> None:
    assert not of_kind(base_objects, "Secret") and not of_kind(top_objects, "Secret")
    for kustomization in (ROOT / "kustomization.yaml", MANIFESTS / "kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(kustomization.read_text())
    for configmap in of_kind(base_objects, "ConfigMap"):
        for key, text in configmap.get("data", {}).items():
            assert not re.search(r"(?i)(password|api[_-]?key|bearer)\"?\s*[:=]\s*\"[^\"]+", text), key


# ---- the image --------------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or (stripped.startswith("#") and not current):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _env() -> dict[str, str]:
    """ENV of the final stage (KEY=VALUE form)."""
    instructions = _instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    env: dict[str, str] = {}
    for op, args in instructions[last_from:]:
        if op == "ENV":
            env.update(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', args)))
    return {k: v.strip('"') for k, v in env.items()}


def test_image_is_multi_stage_on_the_pinned_slim_base() -> None:
    bases = [args.split()[0] for op, args in _instructions() if op == "FROM"]
    assert len(bases) >= 2, "build and runtime stages"
    assert all(base.split("@")[0] == BASE_IMAGE for base in bases), bases


def test_image_trains_the_model_at_build_time_into_model_dir() -> None:
    runs = [args for op, args in _instructions() if op == "RUN"]
    trains = [r for r in runs if "python -m app.train" in r]
    assert trains, "no RUN python -m app.train"
    assert f"--out {_env()['MODEL_DIR']}" in trains[0]
    copies = [args for op, args in _instructions() if op == "COPY" and "--from=" in args]
    assert any(_env()["MODEL_DIR"] in c for c in copies), "the model is not copied into the runtime stage"


def test_image_runs_the_serve_command_as_the_pods_uid(base_objects: list[Obj]) -> None:
    instructions = _instructions()
    cmd = [args for op, args in instructions if op == "CMD"][-1]
    assert json.loads(cmd) == SERVE_COMMAND
    user = [args for op, args in instructions if op == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {user} must be numeric and not root"
    assert int(uid) == _pod_spec(base_objects)["securityContext"]["runAsUser"]


def test_image_and_deployment_agree_on_the_contract(base_objects: list[Obj]) -> None:
    env = _env()
    container = _pod_spec(base_objects)["containers"][0]
    declared = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for name in ("PORT", "METRICS_PORT", "MODEL_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        assert env.get(name) == declared.get(name), name
    exposed = {int(p) for op, args in _instructions() if op == "EXPOSE" for p in args.split()}
    assert exposed == {p["containerPort"] for p in container["ports"]}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        assert env.get(name) == "1", f"{name}: BLAS threads must be pinned to one per worker"


def test_image_installs_locked_versions_and_leaves_no_pip_cache() -> None:
    installs = [args for op, args in _instructions() if op == "RUN" and re.search(r"\bpip3? install\b", args)]
    assert installs
    for args in installs:
        assert "--no-cache-dir" in args, args
        # The versions CI tested, not whatever is newest on the day of the build.
        assert re.search(r"(--constraint|-c) requirements\.lock", args), args


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for this check: the last matching pattern wins, `!` re-includes,
    a pattern matching a directory covers what is inside it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "requirements.lock", "app/train.py", "app/gunicorn.conf.py"):
        assert not _docker_ignored(needed, patterns), needed
    for unwanted in (
        ".git/config",
        ".venv/bin/python",
        "model/model.joblib",
        ".state/x",
        "tests/conftest.py",
        "app/__pycache__/model.cpython-311.pyc",
    ):
        assert _docker_ignored(unwanted, patterns), unwanted
