"""Traffic that looks like the model's real clients.

    locust -f loadtest/locustfile.py                                            # web UI on :8089, app on :8000
    locust --config loadtest/locust.conf                                        # headless, CSV + HTML reports
    locust --config loadtest/locust.conf --drift-features proline,alcohol        # drifted inputs
    locust -f loadtest/locustfile.py --processes 4                              # a master and 4 workers
    kubectl apply -k loadtest                                                   # master and workers in the cluster

The master (or a run with its web UI) serves locust's numbers on /metrics of the web UI port (exporter.py).

Most requests are single or batch predictions whose rows are drawn from the training data (with a little
noise); a small share are invalid on purpose and count as a success only when the server answers them
with the expected 4xx; a few read /model. `--drift-features` shifts the named features by
`--drift-shift` standard deviations in every row, which is what the drift panels and alerts must catch.
A share of single predictions (`--feedback-share`) is followed by POST /feedback carrying the answer's receipt
and the dataset's true label (app/receipts.py); `--concept-drift-class class_1` reports
every row of that class as another class (wrong ground truth), which is what the live-accuracy alert must
catch.
Load is the user's: `-u`, `-r` and `-t` (locust.conf sets 10 users for 120 s). A built-in shape runs only when
asked for with `--load-profile steady|ramp|spike` (peak `--peak-users`, for `--profile-seconds`), in every mode:
alone, `--processes N`, or `--master` with `--worker`s; the shape then sets users and duration.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner

# The package this file belongs to, importable from wherever locust is started (locust puts only the current
# directory and this file's own directory on the path).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Its init listener serves the master's numbers on /metrics.
from loadtest import exporter  # noqa: F401
from loadtest.rows import CLASSES, FEATURES, STD, noisy_rows

log = logging.getLogger("loadtest")

# (body, content type, expected status): each is refused for a different reason.
INVALID_REQUESTS: list[tuple[bytes, str, int]] = [
    (b"{not json", "application/json", 400),
    (json.dumps({"instances": [[1.0, 2.0]]}).encode(), "application/json", 400),
    (json.dumps({"instances": []}).encode(), "application/json", 400),
    (json.dumps({"rows": [[0.0] * len(FEATURES)]}).encode(), "application/json", 400),
    (json.dumps({"instances": [["a"] * len(FEATURES)]}).encode(), "application/json", 400),
    (json.dumps({"instances": [[0.0] * len(FEATURES)]}).encode(), "text/plain", 415),
]


PROFILES = ("steady", "ramp", "spike")


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--drift-features", default="", help="comma-separated features to shift (drift mode)")
    parser.add_argument("--drift-shift", type=float, default=3.0, help="shift in training standard deviations")
    parser.add_argument(
        "--load-profile", choices=PROFILES, default=None, help="run a built-in load shape instead of -u/-r/-t"
    )
    parser.add_argument("--peak-users", type=int, default=10, help="users at the shape's peak")
    parser.add_argument("--profile-seconds", type=int, default=180, help="how long the shape runs")
    parser.add_argument("--feedback-share", type=float, default=0.3, help="share of predictions given feedback")
    parser.add_argument("--concept-drift-class", default="", help="report this class's rows as another class")
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

    # The app where `make up` (APP_PORT) or the README's port-forward (8000) puts it; --host overrides.
    host = f"http://127.0.0.1:{os.environ.get('APP_PORT') or 8000}"
    wait_time = staticmethod(lambda: random.expovariate(4.0))  # ~4 requests/s per user, Poisson-like

    def on_start(self) -> None:
        self.rng = np.random.default_rng()
        options = self.environment.parsed_options
        self.shift = drift_vector(options) if options else 0.0
        self.feedback_share = options.feedback_share if options else 0.0
        self.mislabelled = options.concept_drift_class if options else ""
        if self.mislabelled and self.mislabelled not in CLASSES:
            raise ValueError(f"--concept-drift-class: {self.mislabelled!r} is not one of {CLASSES}")

    def sample(self, n: int) -> tuple[list[list[float]], list[str]]:
        """n rows drawn from the data set with a little noise, and each row's true class."""
        rows, classes = noisy_rows(self.rng, n, self.shift)
        return rows.tolist(), classes

    def rows(self, n: int) -> list[list[float]]:
        return self.sample(n)[0]

    def ground_truth(self, actual: str) -> str:
        if actual != self.mislabelled:
            return actual
        return CLASSES[(CLASSES.index(actual) + 1) % len(CLASSES)]

    @task(12)
    def predict_one(self) -> None:
        rows, actual = self.sample(1)
        response = self.client.post("/predict", json={"instances": rows}, name="/predict")
        if response.status_code != 200 or self.rng.random() >= self.feedback_share:
            return
        # The answer's receipt names the prediction (version and class, sealed): feedback adds only the truth.
        item = {"receipt": response.json()["receipt"], "actual": self.ground_truth(actual[0])}
        self.client.post("/feedback", json={"feedback": [item]}, name="/feedback")

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
    with the full peak for the middle fifth.

    Abstract, so that locust does not pick it up by itself (a discovered shape silently overrides -u, -r and
    -t); `_shape_on_request` installs it when `--load-profile` asks for it."""

    abstract = True

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


@events.init.add_listener
def _shape_on_request(environment, runner, **_kwargs) -> None:
    """Install ProfileShape on the runner that drives users (local or master) when --load-profile names one.
    init fires before a headless run starts and before the web UI's first swarm, so both see it."""
    options = environment.parsed_options
    if options is None or not options.load_profile or isinstance(runner, WorkerRunner):
        return
    given = [
        flag
        for flag, value in (("-u", options.num_users), ("-r", options.spawn_rate), ("-t", options.run_time))
        if value
    ]
    if given:
        log.warning("--load-profile %s sets users and duration: %s ignored", options.load_profile, ", ".join(given))
    shape = ProfileShape()
    shape.runner = runner
    environment.shape_class = shape


def threshold_breach(environment) -> str | None:
    """Which of locust.conf's thresholds the run so far crosses, if any (None: within both, or no requests)."""
    stats, options = environment.stats.total, environment.parsed_options
    if not stats.num_requests or options is None:
        return None
    p95 = stats.get_response_time_percentile(0.95)
    if stats.fail_ratio > options.max_failure_ratio:
        return f"failure ratio {stats.fail_ratio:.3f} is above --max-failure-ratio {options.max_failure_ratio:.3f}"
    if p95 > options.max_p95_ms:
        return f"p95 {p95:.0f} ms is above --max-p95-ms {options.max_p95_ms:.0f}"
    return None


@events.test_stop.add_listener
def _verdict(environment, **_kwargs) -> None:
    """The thresholds' verdict when a run ends, in the log: a master that keeps running after its run (the web
    UI, --autostart) has no exit code to show it."""
    if isinstance(environment.runner, WorkerRunner) or not environment.stats.total.num_requests:
        return
    breach = threshold_breach(environment)
    if breach:
        log.error("thresholds: %s", breach)
    else:
        log.info("thresholds: within --max-failure-ratio and --max-p95-ms")


@events.quitting.add_listener
def _thresholds(environment, **_kwargs) -> None:
    if environment.stats.total.num_requests and environment.parsed_options is not None:
        environment.process_exit_code = 1 if threshold_breach(environment) else 0
