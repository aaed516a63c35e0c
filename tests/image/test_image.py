"""The image as the cluster gets it: the Dockerfile built by podman, run read-only as the pod's uid with no
capabilities, writable only where the Deployment mounts volumes and at /dev/shm. It must answer as the
Deployment's probes and Prometheus expect, and serve the model its training arguments make."""

from __future__ import annotations

import shlex
from pathlib import Path

import requests

from app.metrics import HTTP_REQUESTS_TOTAL, MODEL_PREDICTIONS_TOTAL
from harness import image
from harness.exposition import total
from harness.image import pod_spec
from harness.load import ROW
from harness.processes import children
from offcluster.pods import train_args
from tests.image.figures import note
from tests.manifests.deploy_spec import SERVE_COMMAND


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_the_built_image_runs_the_serve_command_as_the_pods_user(stable_image, stable_deployment):
    config = image.image_config(stable_image.tag)
    assert [*(config.get("Entrypoint") or []), *config["Cmd"]] == SERVE_COMMAND
    assert config["User"].split(":")[0] == str(pod_spec(stable_deployment)["securityContext"]["runAsUser"])


def test_the_builder_drops_nothing_the_dockerfile_says(stable_image, canary_image):
    # podman and buildah write OCI images by default and drop what that format cannot hold (SHELL, HEALTHCHECK,
    # ONBUILD) with a warning: the image would then run differently from what the Dockerfile reads as.
    assert stable_image.warnings == [] and canary_image.warnings == []


def test_it_runs_as_the_pods_uid_without_capabilities_on_a_read_only_root(stable, stable_deployment):
    security = pod_spec(stable_deployment)["securityContext"]
    processes = [stable.pid, *children(stable.pid)]
    assert len(processes) > 1, "the gunicorn master has no workers"
    for pid in processes:
        status = _status(pid)
        assert status["Uid"].split() == [str(security["runAsUser"])] * 4, status["Uid"]
        assert status["Gid"].split() == [str(security["runAsGroup"])] * 4, status["Gid"]
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"] == "1"
    mounts = [line.split() for line in Path(f"/proc/{stable.pid}/mountinfo").read_text().splitlines()]
    root = [fields for fields in mounts if fields[4] == "/"]
    assert root and "ro" in root[-1][5].split(","), root
    # Metrics went where the Deployment mounts the multiprocess volume, not anywhere else.
    multiproc = stable.spec.env["PROMETHEUS_MULTIPROC_DIR"]
    assert multiproc in {v.path for v in stable.spec.tmpfs}
    assert list(Path(f"/proc/{stable.pid}/root{multiproc}").glob("*.db"))


def test_every_probe_of_the_deployment_succeeds(stable, stable_deployment):
    container = pod_spec(stable_deployment)["containers"][0]
    # The ports as the container declares them, and where this run listens instead.
    declared = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    local = {int(env["PORT"]): stable.app, int(env["METRICS_PORT"]): stable.metrics.removesuffix("/metrics")}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        port = declared.get(probe["port"], probe["port"])
        answer = requests.get(f"{local[port]}{probe['path']}", timeout=5)
        assert 200 <= answer.status_code < 400, f"{kind} {probe['path']} on {probe['port']}: {answer.status_code}"


def test_it_is_ready_and_predicts(stable):
    ready = requests.get(f"{stable.app}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    answer = requests.post(f"{stable.app}/predict", json={"instances": [ROW, ROW]}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    refused = requests.post(f"{stable.app}/predict", json={"instances": [ROW[:-1]]}, timeout=10)
    assert refused.status_code == 400 and "error" in refused.json()


def test_its_metrics_port_counts_a_prediction(stable):
    before = requests.get(stable.metrics, timeout=5).text
    assert requests.post(f"{stable.app}/predict", json={"instances": [ROW]}, timeout=10).status_code == 200
    after = requests.get(stable.metrics, timeout=5).text
    assert total(after, MODEL_PREDICTIONS_TOTAL) - total(before, MODEL_PREDICTIONS_TOTAL) == 1
    counted = {"route": "/predict", "status": "200"}
    assert total(after, HTTP_REQUESTS_TOTAL, **counted) - total(before, HTTP_REQUESTS_TOTAL, **counted) == 1


def test_it_serves_the_model_python_m_app_train_writes(stable, stable_image, trained_version):
    args = image.build_arg_default("TRAIN_ARGS")
    expected = trained_version(args)
    served = requests.get(f"{stable.app}/model", timeout=5).json()["version"]
    command = shlex.join(["python", "-m", "app.train", *args])
    note(f"{stable_image.tag} serves model version {served}; `{command}` wrote {expected}")
    assert served == expected
    assert requests.get(f"{stable.app}/readyz", timeout=5).json()["model_version"] == expected


def test_the_canary_image_serves_the_model_its_train_args_make(
    canary, canary_image, canary_deployment, stable, trained_version
):
    args = list(train_args(canary_deployment))
    assert args, "the canary Deployment declares no training arguments"
    expected = trained_version(args)
    served = requests.get(f"{canary.app}/model", timeout=5).json()["version"]
    stable_version = requests.get(f"{stable.app}/model", timeout=5).json()["version"]
    command = shlex.join(["python", "-m", "app.train", *args])
    note(f"{canary_image.tag} serves model version {served}; `{command}` wrote {expected} (stable: {stable_version})")
    assert served == expected
    assert served != stable_version
