"""Loading the trained artefact and running it on validated input."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from app.compiled_model import checked

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
PUBLIC_METADATA = ("name", "version", "dataset", "feature_names", "class_names", "accuracy", "trained_at")


class ModelUnavailable(Exception):
    """The artefact is missing or unreadable; the message says which file and why."""


@dataclass(frozen=True)
class Prediction:
    labels: list[str]
    probabilities: np.ndarray
    class_indices: np.ndarray
    bin_indices: np.ndarray
    inference_seconds: float


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    metadata: dict[str, Any]
    bin_edges: tuple[np.ndarray, ...]
    # The columns with drift bins, one per entry of `bin_edges`; None when every feature has them.
    drift_columns: np.ndarray | None = None

    @cached_property
    def _edge_matrix(self) -> np.ndarray:
        # Features x most edges, padded with +inf: a value's bin is how many of its feature's edges are <= it.
        matrix = np.full((len(self.bin_edges), max(map(len, self.bin_edges))), np.inf)
        for j, edges in enumerate(self.bin_edges):
            matrix[j, : len(edges)] = edges
        return matrix

    @cached_property
    def _edge_ranks(self) -> tuple[np.ndarray, ...]:
        # One column of the edge matrix per rank: comparing a batch against each in turn and adding the results
        # costs a third of one comparison with a third axis summed over it (measured at 256 rows x 13 features).
        return tuple(np.ascontiguousarray(column) for column in self._edge_matrix.T)

    @cached_property
    def _class_labels(self) -> tuple[str, ...]:
        return tuple(self.class_names)

    @cached_property
    def proba(self) -> Callable[[np.ndarray], np.ndarray]:
        """`predict_proba` without scikit-learn's per-call input validation when the estimator is one
        `app.compiled_model` knows, checked against it on rows at the drift bins' edges; else predict_proba."""
        edges = [e if len(e) else np.zeros(1) for e in self.bin_edges]
        depth = max(map(len, edges))
        columns = np.arange(len(edges)) if self.drift_columns is None else self.drift_columns
        # Model-wide rows: each monitored column walks its bin edges, the others stay 1.
        probe = np.ones((depth, len(self.feature_names)))
        probe[:, columns] = np.array([[e[min(k, len(e) - 1)] for e in edges] for k in range(depth)])
        probe = np.vstack([probe, probe * 0.5, probe * 2.0, np.zeros_like(probe[:1])])
        compiled = checked(self.estimator, probe)
        if compiled is not None:
            return compiled

        def validated(rows: np.ndarray) -> np.ndarray:
            with sklearn.config_context(assume_finite=True):
                return self.estimator.predict_proba(rows)

        return validated

    @property
    def version(self) -> str:
        return self.metadata["version"]

    @property
    def feature_names(self) -> list[str]:
        return self.metadata["feature_names"]

    @property
    def class_names(self) -> list[str]:
        return self.metadata["class_names"]

    @property
    def drift_feature_names(self) -> list[str]:
        """The features that carry drift bins (every feature unless training chose a subset)."""
        return [f["name"] for f in self.metadata["reference"]["features"]]

    def public_metadata(self) -> dict[str, Any]:
        return {key: self.metadata[key] for key in PUBLIC_METADATA}

    def predict(self, rows: np.ndarray) -> Prediction:
        """``rows`` as ``app.validation`` returns them: finite, so scikit-learn need not check them again."""
        started = time.perf_counter()
        probabilities = self.proba(rows)
        elapsed = time.perf_counter() - started
        indices = probabilities.argmax(axis=1)
        monitored = rows if self.drift_columns is None else rows[:, self.drift_columns]
        bins = np.zeros(monitored.shape, dtype=np.intp)
        for edges in self._edge_ranks:
            bins += edges <= monitored
        return Prediction(
            labels=list(map(self._class_labels.__getitem__, indices.tolist())),
            probabilities=probabilities,
            class_indices=indices,
            bin_indices=bins,
            inference_seconds=elapsed,
        )


def load(model_dir: Path) -> LoadedModel:
    metadata_path = model_dir / METADATA_FILE
    model_path = model_dir / MODEL_FILE
    try:
        metadata = json.loads(metadata_path.read_text())
        estimator = joblib.load(model_path)
        features = metadata["reference"]["features"]
        bin_edges = tuple(np.asarray(f["bin_edges"], dtype=float) for f in features)
        drift_columns = _drift_columns([f["name"] for f in features], metadata["feature_names"])
        if getattr(estimator, "n_features_in_", len(metadata["feature_names"])) != len(metadata["feature_names"]):
            raise ValueError("the model and its metadata disagree on the number of features")
    except FileNotFoundError as exc:
        raise ModelUnavailable(
            f"no model artefact at {model_dir}: {exc.filename} is missing; run `python -m app.train --out {model_dir}`"
        ) from exc
    except Exception as exc:  # a corrupt artefact can fail in json, pickle or numpy
        raise ModelUnavailable(f"model artefact at {model_dir} is unreadable: {type(exc).__name__}: {exc}") from exc
    model = LoadedModel(estimator=estimator, metadata=metadata, bin_edges=bin_edges, drift_columns=drift_columns)
    model.proba  # noqa: B018 - compiled and checked now (before the workers fork), not on a client's request
    return model


def _drift_columns(monitored: list[str], feature_names: list[str]) -> np.ndarray | None:
    """Where the reference features sit among the model's columns: None when they are all of them, in order."""
    if monitored == feature_names:
        return None
    position = {name: j for j, name in enumerate(feature_names)}
    if not monitored or any(name not in position for name in monitored):
        raise ValueError("reference features are not a subset of feature_names")
    columns = np.array([position[name] for name in monitored])
    if (np.diff(columns) <= 0).any():
        raise ValueError("reference features are not in column order")
    return columns
