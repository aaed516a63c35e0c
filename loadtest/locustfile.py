"""Traffic that looks like the model's real clients.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                 # web UI on :8089
    locust --config loadtest/locust.conf                                        # headless, CSV + HTML reports
    locust --config loadtest/locust.conf --drift-features proline,alcohol        # drifted inputs

Most requests are single or batch predictions whose rows are drawn from the training data (with a little
noise); a small share are invalid on purpose and count as a success only when the server answers them
with the expected 4xx; a few read /model. `--drift-features` shifts the named features by
`--drift-shift` standard deviations in every row, which is what the drift panels and alerts must catch.
`--load-profile` picks the load shape: steady, ramp or spike (peak `--peak-users`, for `--profile-seconds`).
"""

from __future__ import annotations

import json
import logging
import random

import numpy as np
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from sklearn.datasets import load_wine

log = logging.getLogger("loadtest")

_WINE = load_wine()
FEATURES: list[str] = list(_WINE.feature_names)
DATA: np.ndarray = _WINE.data
STD: np.ndarray = DATA.std(axis=0)

# (body, content type, expected status): each is refused for a different reason.
INVALID_REQUESTS: list[tuple[bytes, str, int]] = [
    (b"{not json", "application/json", 400),
    (json.dumps({"instances": [[1.0, 2.0]]}).encode(), "application/json", 400),
    (json.dumps({"instances": []}).encode(), "application/json", 400),
    (json.dumps({"rows": [[0.0] * len(FEATURES)]}).encode(), "application/json", 400),
    (json.dumps({"instances": [["a"] * len(FEATURES)]}).encode(), "application/json", 400),
    (json.dumps({"instances": [[0.0] * len(FEATURES)]}).encode(), "text/plain", 415),
]


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--drift-features", default="", help="comma-separated features to shift (drift mode)")
    parser.add_argument("--drift-shift", type=float, default=3.0, help="shift in training standard deviations")
    parser.add_argument("--load-profile", choices=["steady", "ramp", "spike"], default="steady", help="load shape")
    parser.add_argument("--peak-users", type=int, default=10, help="users at the shape's peak")
    parser.add_argument("--profile-seconds", type=int, default=180, help="how long the shape runs")
    parser.add_argument("--max-failure-ratio", type=float, default=0.01, help="exit 1 above this failure ratio")
    parser.add_argument("--max-p95-ms", type=float, default=500.0, help="exit 1 above this p95 latency (ms)")


def drift_vector(options) -> np.ndarray:
    shift = np.zeros(len(FEATURES))
    names = [n.strip() for n in (getattr(options, "drift_features", "") or "").split(",") if n.strip()]
    for name in names:
        if name not in FEATURES:
            raise ValueError(f"--drift-features: {name!r} is not a model feature ({', '.join(FEATURES)})")
        shift[FEATURES.index(name)] = options.drift_shift * STD[FEATURES.index(name)]
    return shift


class ModelClient(FastHttpUser):
    """One client application: mostly predictions, sometimes a bad request or a metadata read."""

    wait_time = staticmethod(lambda: random.expovariate(4.0))  # ~4 requests/s per user, Poisson-like

    def on_start(self) -> None:
        self.rng = np.random.default_rng()
        self.shift = drift_vector(self.environment.parsed_options) if self.environment.parsed_options else 0.0

    def rows(self, n: int) -> list[list[float]]:
        picked = DATA[self.rng.integers(0, len(DATA), n)]
        noisy = picked + self.rng.normal(0.0, 0.05, picked.shape) * STD + self.shift
        return np.round(noisy, 4).tolist()

    @task(12)
    def predict_one(self) -> None:
        self.client.post("/predict", json={"instances": self.rows(1)}, name="/predict")

    @task(4)
    def predict_batch(self) -> None:
        self.client.post("/predict", json={"instances": self.rows(int(self.rng.integers(2, 33)))}, name="/predict")

    @task(2)
    def predict_objects(self) -> None:
        rows = [dict(zip(FEATURES, row, strict=True)) for row in self.rows(2)]
        self.client.post("/predict", json={"instances": rows}, name="/predict")

    @task(1)
    def invalid(self) -> None:
        body, content_type, expected = random.choice(INVALID_REQUESTS)
        with self.client.post(
            "/predict", data=body, headers={"Content-Type": content_type}, name="/predict [invalid]",
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == expected and response.json().get("error"):
                response.success()
            else:
                response.failure(f"expected {expected} with a JSON error, got {response.status_code}")

    @task(1)
    def model_metadata(self) -> None:
        self.client.get("/model", name="/model")


class ProfileShape(LoadTestShape):
    """steady: the peak throughout; ramp: up over the first 60 %, then hold; spike: a quarter of the peak
    with the full peak for the middle fifth."""

    def tick(self):
        options = self.runner.environment.parsed_options
        run_time, total, peak = self.get_run_time(), options.profile_seconds, options.peak_users
        if run_time >= total:
            return None
        if options.load_profile == "ramp":
            users = max(1, round(peak * min(1.0, run_time / (0.6 * total))))
        elif options.load_profile == "spike":
            users = peak if 0.4 * total <= run_time < 0.6 * total else max(1, peak // 4)
        else:
            users = peak
        return users, max(1, peak)


@events.quitting.add_listener
def _thresholds(environment, **_kwargs) -> None:
    stats, options = environment.stats.total, environment.parsed_options
    if not stats.num_requests or options is None:
        return
    p95 = stats.get_response_time_percentile(0.95)
    if stats.fail_ratio > options.max_failure_ratio:
        log.error("failure ratio %.3f is above --max-failure-ratio %.3f", stats.fail_ratio, options.max_failure_ratio)
        environment.process_exit_code = 1
    elif p95 > options.max_p95_ms:
        log.error("p95 %.0f ms is above --max-p95-ms %.0f", p95, options.max_p95_ms)
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0
