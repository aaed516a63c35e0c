"""`predict_proba` for the estimators `app.train` makes, as a few numpy operations.

scikit-learn's `predict_proba` spends most of a small call validating its input (`validate_data`,
`check_array`, the output-container wrapper of every transformer): for one row that is several times the
arithmetic. `app.validation` has already checked the rows (a finite float64 matrix of the model's width),
so the serving path can do the arithmetic alone: the same operations in the same order as scikit-learn, so
the answers are the same to the last bit or nearly (the tests require 1e-12 on the whole data set).

Only what is known is compiled: a Pipeline of StandardScaler steps ending in a LogisticRegression or a
single-output DecisionTreeClassifier (exact classes, not subclasses). Anything else, and anything whose
compiled answers differ from `predict_proba` on probe rows when the model is loaded, keeps `predict_proba`.
No width or class count is assumed: both come from the fitted estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

Proba = Callable[[np.ndarray], np.ndarray]
TOLERANCE = 1e-12


def _scaler(step: StandardScaler) -> Callable[[np.ndarray], np.ndarray] | None:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def transform(x: np.ndarray) -> np.ndarray:
        # scikit-learn subtracts, then divides, in place on a copy: the same two roundings here.
        x = x.copy()
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return transform


def _softmax(scores: np.ndarray) -> np.ndarray:
    # sklearn.utils.extmath.softmax, step by step.
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def _logistic(step: LogisticRegression) -> Proba | None:
    coef_t = np.ascontiguousarray(step.coef_.T)
    intercept = step.intercept_
    if len(step.classes_) <= 2 or step.solver == "liblinear" or getattr(step, "multi_class", "auto") == "ovr":
        return None  # one-vs-rest probabilities: not what app.train fits; predict_proba handles them

    def proba(x: np.ndarray) -> np.ndarray:
        return _softmax(x @ coef_t + intercept)

    return proba


def _tree(step: DecisionTreeClassifier) -> Proba | None:
    if step.n_outputs_ != 1:
        return None
    tree = step.tree_
    left, right = tree.children_left, tree.children_right
    feature, threshold = tree.feature, tree.threshold
    value = tree.value[:, 0, :]
    depth = tree.max_depth

    def proba(x: np.ndarray) -> np.ndarray:
        # The tree compares float32 inputs (its dtype) with float64 thresholds, as here.
        x = x.astype(np.float32).astype(np.float64)
        node = np.zeros(len(x), dtype=np.intp)
        rows = np.arange(len(x))
        for _ in range(depth):
            inner = left[node] != -1
            if not inner.any():
                break
            go_left = x[rows, feature[node]] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        out = value[node].copy()
        normaliser = out.sum(axis=1, keepdims=True)
        normaliser[normaliser == 0.0] = 1.0
        out /= normaliser
        return out

    return proba


def _final(step: Any) -> Proba | None:
    if type(step) is LogisticRegression:
        return _logistic(step)
    if type(step) is DecisionTreeClassifier:
        return _tree(step)
    return None


def compile_proba(estimator: Any) -> Proba | None:
    """A function equal to `estimator.predict_proba` on validated float64 rows, or None when not known."""
    steps = [step for _, step in estimator.steps] if type(estimator) is Pipeline else [estimator]
    if any(step is None or step == "passthrough" for step in steps):
        return None
    transforms = []
    for step in steps[:-1]:
        if type(step) is not StandardScaler:
            return None
        transforms.append(_scaler(step))
    final = _final(steps[-1])
    if final is None:
        return None

    def proba(x: np.ndarray) -> np.ndarray:
        for transform in transforms:
            x = transform(x)
        return final(x)

    return proba


def checked(estimator: Any, probe: np.ndarray) -> Proba | None:
    """The compiled path when it agrees with `predict_proba` on `probe` to TOLERANCE, else None."""
    try:
        compiled = compile_proba(estimator)
        if compiled is None:
            return None
        expected, got = estimator.predict_proba(probe), compiled(probe)
    except Exception:  # an estimator this module misreads: predict_proba stays, and says what is wrong
        return None
    if got.shape == expected.shape and float(np.abs(got - expected).max(initial=0.0)) <= TOLERANCE:
        return compiled
    return None
