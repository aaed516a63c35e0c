"""The per-model metrics of one worker: children resolved once, and a batch recorded in the same number of
shared-memory writes whatever its size, part of it summed in the worker and written by a background thread.
How the workers' numbers meet at /metrics: docs/metrics.md.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from app.metrics import (
    batch_rows,
    confidence,
    feedback,
    inference_duration,
    input_feature_bin,
    model_info,
    predictions,
    reference_class,
    reference_feature_bin,
    training_accuracy,
)
from app.pending import FLUSHER, PendingHistogram


class ModelMetrics:
    """The per-model children, resolved once so that the request path only calls ``inc``/``observe``.

    Counted at once, exact at every scrape: predictions by class (as is the request count in
    ``app.instrumentation``). Summed in the worker and written by a background thread every
    ``app.pending.FLUSH_SECONDS`` and at exit: input values by feature bin (13 writes a row otherwise), rows per
    batch, the confidence of each row and the model-call time (a histogram's observe writes a bucket and a sum:
    at 1 row, rows per batch written at once were a third of instrumentation's cost). Those reach /metrics up to
    that much later, and a worker killed with SIGKILL loses at most that much of them. Either way a request
    costs the same number of shared-memory writes at 1 row as at 256.
    """

    def __init__(
        self,
        name: str,
        version: str,
        feature_names: Sequence[str],
        class_names: Sequence[str],
        bin_ratios: Sequence[Sequence[float]],
        class_ratios: Sequence[float],
        accuracy: float,
    ) -> None:
        self.version = version
        self._class_names = tuple(class_names)
        # The whole confusion matrix at 0: accuracy queries have every cell from the first scrape on. Other
        # versions (feedback with a receipt, app/receipts.py) get theirs when this worker first sees them.
        self._feedback_children = {version: self._matrix(version)}
        training_accuracy.labels(version).set(accuracy)
        self._class_children = [predictions.labels(version, c) for c in class_names]
        # Flat index feature * width + bin, so one bincount sums a whole batch.
        self._width = max(len(r) for r in bin_ratios)
        self._bin_children = {
            f * self._width + b: input_feature_bin.labels(feature, str(b))
            for f, (feature, ratios) in enumerate(zip(feature_names, bin_ratios, strict=True))
            for b in range(len(ratios))
        }
        self._offsets = np.arange(len(feature_names)) * self._width
        self._pending_bins = np.zeros(len(feature_names) * self._width, dtype=np.int64)
        self._pending_lock = threading.Lock()
        FLUSHER.register(self._flush_bins)
        self._batch_rows = PendingHistogram(batch_rows)
        self._confidence = PendingHistogram(confidence)
        self._inference = PendingHistogram(inference_duration)
        model_info.labels(name, version).set(1)
        for feature, ratios in zip(feature_names, bin_ratios, strict=True):
            for b, ratio in enumerate(ratios):
                reference_feature_bin.labels(feature, str(b)).set(ratio)
        for cls, ratio in zip(class_names, class_ratios, strict=True):
            reference_class.labels(cls).set(ratio)

    def observe_batch(
        self,
        bin_indices: np.ndarray,
        predicted: np.ndarray,
        top_probability: np.ndarray,
        inference_seconds: float,
    ) -> None:
        """Record one accepted batch; ``bin_indices`` is rows x features, ``predicted`` class indices."""
        rows = len(predicted)
        self._batch_rows.observe(rows)
        if rows == 1:
            self._class_children[int(predicted[0])].inc()
        else:
            for cls, count in enumerate(np.bincount(predicted, minlength=len(self._class_children)).tolist()):
                if count:
                    self._class_children[cls].inc(count)
        bins = np.bincount((bin_indices + self._offsets).ravel(), minlength=len(self._pending_bins))
        with self._pending_lock:
            self._pending_bins += bins
        if rows == 1:
            self._confidence.observe(float(top_probability[0]))
        else:
            self._confidence.observe_all(top_probability)
        self._inference.observe(inference_seconds)

    def flush(self) -> None:
        """Write what this worker summed since the last flush (the flusher thread does it every second)."""
        self._flush_bins()
        self._batch_rows.flush()
        self._confidence.flush()
        self._inference.flush()

    def _flush_bins(self) -> None:
        with self._pending_lock:
            bins, self._pending_bins = self._pending_bins, np.zeros_like(self._pending_bins)
        for index in np.flatnonzero(bins).tolist():
            self._bin_children[index].inc(int(bins[index]))

    def _matrix(self, version: str) -> dict[tuple[str, str], Any]:
        names = self._class_names
        return {(p, a): feedback.labels(version, p, a) for p in names for a in names}

    def observe_feedback(self, items: Iterable[tuple[str, str, str]]) -> None:
        """Count (version, predicted, actual) items, already checked: classes against the model, a version other
        than this model's by its receipt."""
        # One shared-memory write per cell, not per item: a 256-item batch names a few cells many times.
        for (version, predicted, actual), count in Counter(items).items():
            matrix = self._feedback_children.get(version)
            if matrix is None:
                matrix = self._feedback_children[version] = self._matrix(version)
            matrix[predicted, actual].inc(count)
