"""KServe's Python model server around the project's joblib file, in the shape of KServe's own sklearn server.

Run with the KServe venv's Python (benchmarks/peers.py does): it imports nothing from this project.

    python kserve_sklearn.py --model_dir DIR --http_port PORT --grpc_port PORT --workers 2

Like kserve/sklearnserver: load() reads the joblib file, predict() turns the V1 body's "instances" into an array
with kserve.utils.get_predict_input and answers predict_proba through get_predict_response. KServe 0.21 binds
0.0.0.0 for HTTP and [::] for gRPC with no setting to change it: both are rewritten to 127.0.0.1 here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc.aio
import joblib
import uvicorn

MODEL_NAME = "wine"


class _LoopbackConfig(uvicorn.Config):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


_grpc_server = grpc.aio.server


def _loopback_grpc_server(*args, **kwargs):
    server = _grpc_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port("127.0.0.1:" + address.rsplit(":", 1)[1])
    return server


uvicorn.Config = _LoopbackConfig
grpc.aio.server = _loopback_grpc_server

import kserve  # noqa: E402  (after the patches: kserve reads uvicorn.Config and grpc.aio.server when it serves)
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402


class SKLearnModel(kserve.Model):
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self._model = None

    def load(self) -> bool:
        self._model = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        return get_predict_response(payload, self._model.predict_proba(instances), self.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", type=Path, required=True)
    args, _ = parser.parse_known_args()
    model = SKLearnModel(MODEL_NAME, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])
