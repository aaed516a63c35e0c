"""Every metric the service exports, declared in one place, with its name as a constant.

The dashboard generator (``dashboard/``) and the rule generator (``alerts/``, which writes
``manifests/prometheusrule-*.yaml``) import the name constants from here, so a rename is one edit here and a
regeneration; ``tests/dashboard/test_metric_names.py`` fails when a rule or a panel uses a name that these
collectors do not export. No label ever takes a value chosen by a client: routes come
from the Flask URL map, methods and invalid-input reasons from fixed sets, features, bins and classes from the
loaded model.

This module must be imported after ``PROMETHEUS_MULTIPROC_DIR`` is set, or every worker silently keeps its own
numbers: docs/metrics.md.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily

# The latency SLO threshold must be a bucket boundary so that the SLI is an exact bucket ratio. 0.25 is
# written the same way by prometheus_client and by Prometheus 3's `le` normalisation.
LATENCY_SLO_SECONDS = 0.25
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, LATENCY_SLO_SECONDS, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
CONFIDENCE_BUCKETS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"

# Why a request body was refused. A fixed set: the label never carries client text.
INVALID_REASONS = (
    "unsupported_media_type",
    "body_too_large",
    "invalid_json",
    "duplicate_key",
    "not_an_object",
    "missing_key",
    "unexpected_key",
    "not_a_list",
    "empty_batch",
    "batch_too_large",
    "wrong_row_length",
    "missing_feature",
    "unknown_feature",
    "non_numeric",
    "non_finite",
    # /feedback only
    "invalid_feedback_item",
    "unknown_class",
    "model_version_mismatch",
    "invalid_receipt",
    "receipt_required",
    "receipt_other_key",
    "receipt_expired",
    "receipt_mismatch",
    "receipt_replayed",
    "feedback_store_full",
)

# Why the master's metrics port closed a connection without answering it (app/metrics_server.py). A fixed set.
METRICS_PORT_CLOSE_REASONS = (
    "head_timeout",  # the request line and headers did not arrive within the deadline
    "head_too_large",
    "write_timeout",  # the client did not take the answer within the deadline
    "connection_limit",  # evicted, or refused, to stay under the number of open connections
)

HTTP_REQUESTS_TOTAL = "http_requests_total"
HTTP_REQUEST_DURATION_SECONDS = "http_request_duration_seconds"
HTTP_REQUESTS_IN_FLIGHT = "http_requests_in_flight"
MODEL_PREDICTIONS_TOTAL = "model_predictions_total"
MODEL_PREDICTION_CONFIDENCE = "model_prediction_confidence"
MODEL_INFERENCE_DURATION_SECONDS = "model_inference_duration_seconds"
MODEL_BATCH_ROWS = "model_batch_rows"
MODEL_INPUT_FEATURE_BIN_TOTAL = "model_input_feature_bin_total"
MODEL_REFERENCE_FEATURE_BIN_RATIO = "model_reference_feature_bin_ratio"
MODEL_REFERENCE_CLASS_RATIO = "model_reference_class_ratio"
MODEL_INVALID_REQUESTS_TOTAL = "model_invalid_requests_total"
MODEL_INFO = "model_info"
MODEL_FEEDBACK_TOTAL = "model_feedback_total"
MODEL_TRAINING_ACCURACY = "model_training_accuracy"
METRICS_PORT_CONNECTIONS_CLOSED_TOTAL = "metrics_port_connections_closed_total"
HTTP_CONNECTIONS_CLOSED_TOTAL = "http_connections_closed_total"

# Why a worker closed a connection before its request was whole (app/worker.py). A fixed set, each exported at
# 0 by every worker: `header_timeout` / `body_timeout` (the request's headers, or its body, did not arrive
# within their deadline), `too_large` (more header or raw body bytes than any valid request carries),
# `read_timeout` (a read in a request thread waited past its deadline: only a request handed over before its
# body was complete can get there).
CONNECTION_CLOSE_REASONS = ("header_timeout", "body_timeout", "too_large", "read_timeout")

# A counter's constructor takes the name with or without `_total`; prometheus_client strips it and writes it back
# on the exported sample.
http_requests = Counter(
    HTTP_REQUESTS_TOTAL,
    "HTTP requests answered, by route template, method and status code.",
    ["method", "route", "status"],
)
http_request_duration = Histogram(
    HTTP_REQUEST_DURATION_SECONDS,
    "Time from the request reaching a worker to its response being ready, in seconds.",
    ["method", "route"],
    buckets=REQUEST_BUCKETS,
)
http_in_flight = Gauge(
    HTTP_REQUESTS_IN_FLIGHT,
    "Requests being handled by a worker right now, summed over live workers.",
    multiprocess_mode="livesum",
)
predictions = Counter(
    MODEL_PREDICTIONS_TOTAL,
    "Rows predicted, by model version and predicted class.",
    ["model_version", "predicted_class"],
)
confidence = Histogram(
    MODEL_PREDICTION_CONFIDENCE,
    "Probability of the predicted class, one observation per row.",
    buckets=CONFIDENCE_BUCKETS,
)
inference_duration = Histogram(
    MODEL_INFERENCE_DURATION_SECONDS,
    "Time spent in the model call alone (predict_proba on one batch), in seconds.",
    buckets=INFERENCE_BUCKETS,
)
batch_rows = Histogram(
    MODEL_BATCH_ROWS,
    "Rows per accepted /predict request.",
    buckets=BATCH_BUCKETS,
)
input_feature_bin = Counter(
    MODEL_INPUT_FEATURE_BIN_TOTAL,
    "Input values seen, by feature and by bin of that feature's training distribution.",
    ["feature", "bin"],
)
reference_feature_bin = Gauge(
    MODEL_REFERENCE_FEATURE_BIN_RATIO,
    "Share of training rows in each bin of each feature: the baseline that drift (PSI) is measured against.",
    ["feature", "bin"],
    multiprocess_mode="max",
)
reference_class = Gauge(
    MODEL_REFERENCE_CLASS_RATIO,
    "Share of each class in the training labels: the prior that prediction drift is measured against.",
    ["predicted_class"],
    multiprocess_mode="max",
)
invalid_requests = Counter(
    MODEL_INVALID_REQUESTS_TOTAL,
    "Request bodies refused with a 4xx, by reason.",
    ["reason"],
)
model_info = Gauge(
    MODEL_INFO,
    "Always 1; labels name the model this process serves.",
    ["model_name", "model_version"],
    multiprocess_mode="max",
)

feedback = Counter(
    MODEL_FEEDBACK_TOTAL,
    "Ground-truth labels received for earlier predictions: a confusion matrix fixed by the class list.",
    ["model_version", "predicted_class", "actual_class"],
)
training_accuracy = Gauge(
    MODEL_TRAINING_ACCURACY,
    "Accuracy of the loaded model on its held-out test split at training time: the bar live accuracy meets.",
    ["model_version"],
    multiprocess_mode="max",
)

connections_closed = Counter(
    HTTP_CONNECTIONS_CLOSED_TOTAL,
    "Connections a worker closed before their request was complete (a client too slow or sending too much).",
    ["reason"],
)


class MasterCounter:
    """A counter kept in the gunicorn master's memory and exposed by the master's own /metrics.

    Not a multiprocess file: prometheus_client guards its files with one lock per process, and a worker the
    master forks while one of its server threads holds that lock would wait for it forever. The count starts
    at 0 with each master, as a process's counters do.
    """

    def __init__(self, name: str, documentation: str, label: str, values: Sequence[str]) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self._counts = dict.fromkeys(values, 0)
        self._lock = threading.Lock()

    def inc(self, value: str) -> None:
        if value not in self._counts:
            raise ValueError(f"{value!r} is not one of {tuple(self._counts)}")
        with self._lock:
            self._counts[value] += 1

    def value(self, value: str) -> int:
        return self._counts[value]

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self._name, self._documentation, labels=[self._label])]

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        with self._lock:
            for value, count in self._counts.items():
                family.add_metric([value], count)
        return [family]


metrics_port_closed = MasterCounter(
    METRICS_PORT_CONNECTIONS_CLOSED_TOTAL,
    "Connections the master's metrics port closed without an answer, by reason (counted by the master alone).",
    "reason",
    METRICS_PORT_CLOSE_REASONS,
)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def initialise_invalid_reasons() -> None:
    """Export every reason at 0 so that rates exist before the first bad request."""
    for reason in INVALID_REASONS:
        invalid_requests.labels(reason)


def initialise_connection_close_reasons() -> None:
    """Export every reason at 0 (called in the master, before the workers are forked)."""
    for reason in CONNECTION_CLOSE_REASONS:
        connections_closed.labels(reason)
