"""Loading the trained artefact and running it on validated input."""

from __future__ import annotations

import hashlib
import io
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


# Why there is no model to serve: the `detail` of a 503, so a fixed set (the log line has the paths and the error).
NOT_LOADED = "not_loaded"
MISSING = "missing"  # no metadata or no model file (yet: a volume may arrive late)
UNREADABLE = "unreadable"  # a file that cannot be read or parsed, or metadata without the fields it needs
CHECKSUM_MISSING = "checksum_missing"  # metadata that records no model_sha256: nothing to check the file against
CHECKSUM_MISMATCH = "checksum_mismatch"  # the model file is not the one trained with this metadata
NOT_AN_ESTIMATOR = "not_an_estimator"  # unpickled, but nothing that predicts probabilities for these inputs
METADATA_MISMATCH = "metadata_mismatch"  # an estimator, but for another number of features or classes
UNAVAILABLE_REASONS = (
    NOT_LOADED,
    MISSING,
    UNREADABLE,
    CHECKSUM_MISSING,
    CHECKSUM_MISMATCH,
    NOT_AN_ESTIMATOR,
    METADATA_MISMATCH,
)


class ModelUnavailable(Exception):
    """No servable artefact: `reason` is one of UNAVAILABLE_REASONS (for clients), the message says which file
    and why (for the log only)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


def file_sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _read_checked(model_dir: Path) -> tuple[dict[str, Any], bytes]:
    """The metadata and the model file's bytes, once the bytes match the digest the metadata records."""
    metadata_path = model_dir / METADATA_FILE
    model_path = model_dir / MODEL_FILE
    try:
        # The model file read once and unpickled from these bytes: the bytes checked are the bytes loaded.
        metadata = json.loads(metadata_path.read_bytes())
        blob = model_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelUnavailable(
            MISSING,
            f"no model artefact at {model_dir}: {exc.filename} is missing; run `python -m app.train --out {model_dir}`",
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:  # unreadable file, JSON or UTF-8
        raise ModelUnavailable(
            UNREADABLE, f"{model_dir}: cannot read the artefact: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(metadata, dict):
        raise ModelUnavailable(UNREADABLE, f"{metadata_path} does not hold a JSON object")
    expected = metadata.get("model_sha256")
    if not isinstance(expected, str):
        raise ModelUnavailable(
            CHECKSUM_MISSING,
            f"{metadata_path} records no model_sha256; retrain with `python -m app.train --out {model_dir}`",
        )
    actual = file_sha256(blob)
    if actual != expected:
        raise ModelUnavailable(
            CHECKSUM_MISMATCH, f"{model_path} has SHA-256 {actual}, its metadata records {expected}: not served"
        )
    return metadata, blob


def load(model_dir: Path) -> LoadedModel:
    """The artefact in `model_dir`, checked before it is trusted: the model file's digest against the metadata's
    `model_sha256` BEFORE unpickling (unpickling runs code), then the object against the metadata (an estimator
    with predict_proba for its features and classes), then one prediction. Any failure is a ModelUnavailable."""
    metadata, blob = _read_checked(model_dir)
    metadata_path, model_path = model_dir / METADATA_FILE, model_dir / MODEL_FILE
    try:
        estimator = joblib.load(io.BytesIO(blob))
    except Exception as exc:  # a corrupt pickle can fail in pickle, joblib, numpy or the classes it names
        raise ModelUnavailable(UNREADABLE, f"{model_path} cannot be unpickled: {type(exc).__name__}: {exc}") from exc
    try:
        feature_names, class_names = metadata["feature_names"], metadata["class_names"]
        features = metadata["reference"]["features"]
        bin_edges = tuple(np.asarray(f["bin_edges"], dtype=float) for f in features)
        drift_columns = _drift_columns([f["name"] for f in features], feature_names)
        width, classes = len(feature_names), len(class_names)
        if not (isinstance(metadata["version"], str) and isinstance(metadata["name"], str)):
            raise ValueError("name and version must be strings")
        if len(metadata["reference"]["class_ratios"]) != classes or not isinstance(metadata["accuracy"], float):
            raise ValueError("class_ratios and accuracy do not fit the classes")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(UNREADABLE, f"{metadata_path} is incomplete: {type(exc).__name__}: {exc}") from exc
    _check_estimator(estimator, width, classes, model_path)
    model = LoadedModel(estimator=estimator, metadata=metadata, bin_edges=bin_edges, drift_columns=drift_columns)
    try:
        # Compiled and checked now (before the workers fork), not on a client's request; the first
        # predict_proba pays for lazy initialisation here too.
        probabilities = model.proba(np.zeros((1, width)))
        model.estimator.predict_proba(np.zeros((1, width)))
    except Exception as exc:  # an object that claims the interface but cannot run it
        raise ModelUnavailable(NOT_AN_ESTIMATOR, f"{model_path} fails to predict: {type(exc).__name__}: {exc}") from exc
    if np.shape(probabilities) != (1, classes):
        raise ModelUnavailable(
            METADATA_MISMATCH, f"{model_path} answers {np.shape(probabilities)} probabilities, not 1 x {classes}"
        )
    return model


def _check_estimator(estimator: Any, features: int, classes: int, path: Path) -> None:
    kind = type(estimator).__name__
    try:  # any attribute of an arbitrary unpickled object may raise
        predicts = callable(getattr(estimator, "predict_proba", None))
    except Exception:
        predicts = False
    if not predicts:
        raise ModelUnavailable(NOT_AN_ESTIMATOR, f"{path} holds a {kind}, which has no predict_proba")
    try:
        width, labels = int(estimator.n_features_in_), len(estimator.classes_)
    except Exception as exc:
        raise ModelUnavailable(NOT_AN_ESTIMATOR, f"{path} holds a {kind}, not a fitted classifier: {exc}") from exc
    if width != features or labels != classes:
        raise ModelUnavailable(
            METADATA_MISMATCH,
            f"{path} takes {width} features and {labels} classes, its metadata says {features} and {classes}",
        )


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
