"""The image as the cluster gets it: the Dockerfile built by podman, run read-only as the pod's uid with no
capabilities, writable only where the Deployment mounts volumes and at /dev/shm. It must answer as the
Deployment's probes and Prometheus expect, and serve the model its training arguments make."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import requests

from app.metrics import HTTP_REQUESTS_TOTAL, MODEL_PREDICTIONS_TOTAL
from app.model import METADATA_FILE, load
from app.train import wine
from app.validation import MAX_ROWS
from harness import image
from harness.exposition import total
from harness.load import ROW
from harness.pod_runtime import pod_spec
from harness.processes import children
from offcluster.pods import train_args
from tests.image.figures import note
from tests.manifests.deploy_spec import SERVE_COMMAND

# The served probabilities are rounded to 6 decimals.
ANSWER_TOLERANCE = 1e-6


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


def _same_answers(app: str, artefact: Path) -> float:
    """The largest difference between the image's probabilities and the host-trained model's on every wine row.

    Versions name training inputs and must match exactly; the fitted floats come from another BLAS kernel inside
    the image (no OPENBLAS_CORETYPE there), so answers are compared within a tolerance, never bit for bit."""
    rows = wine().data
    local = load(artefact).predict(rows)
    served = requests.post(f"{app}/predict", json={"instances": rows[:MAX_ROWS].tolist()}, timeout=10).json()
    gap = float(np.abs(np.asarray(served["probabilities"]) - local.probabilities[:MAX_ROWS]).max())
    assert served["predictions"] == local.labels[:MAX_ROWS]
    # The answer is rounded to 6 decimals; the models themselves differ by about 1e-15.
    assert gap <= ANSWER_TOLERANCE, gap
    return gap


def test_it_serves_the_model_python_m_app_train_writes(stable, stable_image, trained_model):
    args = image.build_arg_default("TRAIN_ARGS")
    artefact = trained_model(args)
    expected = json.loads((artefact / METADATA_FILE).read_text())["version"]
    served = requests.get(f"{stable.app}/model", timeout=5).json()["version"]
    command = shlex.join(["python", "-m", "app.train", *args])
    gap = _same_answers(stable.app, artefact)
    note(f"{stable_image.tag} serves model version {served}; `{command}` wrote {expected}; answers within {gap:.1e}")
    assert served == expected
    assert requests.get(f"{stable.app}/readyz", timeout=5).json()["model_version"] == expected


def test_the_canary_image_serves_the_model_its_train_args_make(
    canary, canary_image, canary_deployment, stable, trained_model
):
    args = list(train_args(canary_deployment))
    assert args, "the canary Deployment declares no training arguments"
    artefact = trained_model(args)
    expected = json.loads((artefact / METADATA_FILE).read_text())["version"]
    served = requests.get(f"{canary.app}/model", timeout=5).json()["version"]
    stable_version = requests.get(f"{stable.app}/model", timeout=5).json()["version"]
    command = shlex.join(["python", "-m", "app.train", *args])
    gap = _same_answers(canary.app, artefact)
    note(
        f"{canary_image.tag} serves model version {served}; `{command}` wrote {expected} (stable: {stable_version}); "
        f"answers within {gap:.1e}"
    )
    assert served == expected
    assert served != stable_version
