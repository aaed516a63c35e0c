"""The servers compared, each in its own virtualenv under PEERS_DIR: this project (THE gunicorn command),
KServe's sklearn server and MLServer with mlserver-sklearn, all serving the same joblib file; and the one
request each accepts.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from declarations.paths import ROOT
from harness.server import free_port

PEERS_DIR = Path(os.environ.get("PEERS_DIR", ROOT / ".state" / "peers"))
MODEL_NAME = "wine"
WORKERS = 2


def _locked(*names: str) -> list[str]:
    """`name==version` lines of requirements.lock for these packages: the model must load the same everywhere."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name = line.partition("==")[0]
        pins[name.strip().lower().replace("_", "-")] = line.strip()
    return [pins[name] for name in names]


SHARED = _locked("scikit-learn", "numpy", "joblib")
REQUIREMENTS = {
    "kserve": ["kserve==0.21.0", *SHARED],
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", *SHARED],
}


def ensure_venv(name: str) -> Path:
    """The peer's virtualenv, created or updated when its requirements changed; returns its bin/."""
    venv = PEERS_DIR / name
    marker = venv / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS[name]) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin"
    print(f"installing {name} into {venv} (once; a few minutes): {' '.join(REQUIREMENTS[name])}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS[name]], check=True)
    marker.write_text(wanted)
    return venv / "bin"


# ---- the servers -------------------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    description: str
    process: subprocess.Popen
    url: str  # the predict endpoint
    ready_url: str
    body: Callable[[list[list[float]]], bytes]
    probabilities: Callable[[dict], np.ndarray]
    log: Path
    bodies: dict[int, Path] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _spawn(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS"}}
    # One BLAS thread per process everywhere, as app/gunicorn.conf.py sets for this project.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def _v1_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def start_this(work: Path, model: Path, name: str = "this", gunicorn_args: str = "") -> Peer:
    port, metrics_port = free_port(), free_port()
    env = _env(
        HOST="127.0.0.1",
        PORT=str(port),
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(metrics_port),
        MODEL_DIR=str(model),
        WEB_CONCURRENCY=str(WORKERS),
    )
    # Leading VAR=value words are the server's environment (settings read by app/gunicorn.conf.py); the rest
    # is GUNICORN_CMD_ARGS.
    words = gunicorn_args.split()
    while words and re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", words[0]):
        var, _, value = words.pop(0).partition("=")
        env[var] = value
    if words:
        env["GUNICORN_CMD_ARGS"] = " ".join(words)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = _spawn([gunicorn, "-c", "app/gunicorn.conf.py", "app.wsgi:app"], work / f"{name}.log", ROOT, env)
    return Peer(
        name=name,
        description=f"THE gunicorn command, {WORKERS} workers, {gunicorn_args or '1 thread (config)'}",
        process=process,
        url=f"http://127.0.0.1:{port}/predict",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        body=_v1_body,
        probabilities=lambda answer: np.asarray(answer["probabilities"]),
        log=work / f"{name}.log",
    )


def start_kserve(work: Path, model: Path) -> Peer:
    bin_dir = ensure_venv("kserve")
    port, grpc_port = free_port(), free_port()
    script = ROOT / "benchmarks" / "peer_servers" / "kserve_sklearn.py"
    command = [str(bin_dir / "python"), str(script), "--model_dir", str(model), "--http_port", str(port)]
    command += ["--grpc_port", str(grpc_port), "--workers", str(WORKERS)]
    process = _spawn(command, work / "kserve.log", work, _env())
    return Peer(
        name="kserve",
        description=f"KServe 0.21 Python server, sklearn kserve.Model, --workers {WORKERS}",
        process=process,
        url=f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict",
        ready_url=f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}",
        body=_v1_body,
        probabilities=lambda answer: np.asarray(answer["predictions"]),
        log=work / "kserve.log",
    )


def start_mlserver(work: Path, model: Path) -> Peer:
    bin_dir = ensure_venv("mlserver")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    root = work / "mlserver"
    (root / MODEL_NAME).mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": WORKERS,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model / "model.joblib")},
    }
    (root / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings))
    process = _spawn([str(bin_dir / "mlserver"), "start", str(root)], work / "mlserver.log", root, _env())

    def body(rows: list[list[float]]) -> bytes:
        flat = [v for row in rows for v in row]
        inputs = [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": flat}]
        return json.dumps({"inputs": inputs, "outputs": [{"name": "predict_proba"}]}).encode()

    def probabilities(answer: dict) -> np.ndarray:
        output = answer["outputs"][0]
        return np.asarray(output["data"]).reshape(output["shape"])

    return Peer(
        name="mlserver",
        description=f"MLServer 1.7.1 + mlserver-sklearn, V2, parallel_workers {WORKERS}",
        process=process,
        url=f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer",
        ready_url=f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready",
        body=body,
        probabilities=probabilities,
        log=work / "mlserver.log",
    )


def host_port_path(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    address, _, path = rest.partition("/")
    host, port = address.rsplit(":", 1)
    return host, int(port), "/" + path


def http_request(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    host, port, path = host_port_path(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(peer: Peer, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.process.returncode}; see {peer.log}")
        try:
            if http_request(peer.ready_url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{peer.name} not ready after {timeout:.0f}s; see {peer.log}")
