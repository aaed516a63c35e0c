"""The model a worker serves, loaded at start-up and retried while it is missing."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from app.model import NOT_LOADED, UNREADABLE, LoadedModel, ModelUnavailable, load
from app.model_metrics import ModelMetrics
from app.receipts import Receipts, from_environment

log = logging.getLogger("app.model")

RETRY_SECONDS = 5.0


class ModelState:
    """Holds the loaded model, or the reason there is none.

    A missing or untrustworthy artefact must not crash-loop the pod: readiness stays false, `error` holds a
    reason from ``app.model.UNAVAILABLE_REASONS`` (what clients see; the log has the paths and the exception),
    and the load is retried at most every ``RETRY_SECONDS`` when readiness is probed (a volume may arrive late).
    """

    def __init__(self, model_dir: Path, instrumented: bool = True) -> None:
        self.model_dir = model_dir
        self.instrumented = instrumented
        self.model: LoadedModel | None = None
        self.metrics: ModelMetrics | None = None
        self.error = NOT_LOADED
        self.receipts: Receipts = from_environment()
        self._last_attempt = -RETRY_SECONDS
        self._lock = threading.Lock()
        self.try_load()

    def try_load(self) -> LoadedModel | None:
        # Every /predict calls this: once loaded, answer without taking the lock.
        if self.model is not None:
            return self.model
        with self._lock:
            if self.model is not None or time.monotonic() - self._last_attempt < RETRY_SECONDS:
                return self.model
            self._last_attempt = time.monotonic()
            try:
                model = load(self.model_dir)
                metrics = self._metrics(model) if self.instrumented else None
            except ModelUnavailable as exc:
                self.error = exc.reason
                log.error("model not loaded, readiness will fail (%s): %s", exc.reason, exc)
                return None
            except Exception:  # load() turns every failure it knows into ModelUnavailable; this is the backstop
                self.error = UNREADABLE
                log.exception("model not loaded, readiness will fail (%s)", UNREADABLE)
                return None
            self.metrics = metrics
            self.model = model
            log.info("loaded model %s version %s from %s", model.metadata["name"], model.version, self.model_dir)
            return model

    @staticmethod
    def _metrics(model: LoadedModel) -> ModelMetrics:
        reference = model.metadata["reference"]
        return ModelMetrics(
            name=model.metadata["name"],
            version=model.version,
            feature_names=model.drift_feature_names,
            class_names=model.class_names,
            bin_ratios=[f["bin_ratios"] for f in reference["features"]],
            class_ratios=reference["class_ratios"],
            accuracy=model.metadata["accuracy"],
        )
