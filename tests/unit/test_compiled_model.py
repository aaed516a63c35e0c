"""The compiled inference path gives predict_proba's answers, and keeps predict_proba for what it does not know."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_wine, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from app.compiled_model import TOLERANCE, checked, compile_proba
from app.model import load
from app.train import ESTIMATORS, train, write_artefact

WINE = load_wine().data


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("seed", [42, 7])
def test_equal_to_predict_proba_on_the_whole_data_set(estimator: str, seed: int) -> None:
    model, _ = train(seed, estimator)
    compiled = compile_proba(model)
    assert compiled is not None, f"app.train's {estimator} must take the compiled path"
    got, expected = compiled(WINE), model.predict_proba(WINE)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE
    for row in WINE[:20]:  # one row at a time, as most requests come
        assert np.abs(compiled(row[np.newaxis]) - model.predict_proba(row[np.newaxis])).max() <= TOLERANCE


def test_no_width_or_class_count_assumed() -> None:
    x, y = make_classification(n_samples=300, n_features=5, n_informative=4, n_redundant=0, n_classes=4, random_state=0)
    for final in (LogisticRegression(max_iter=1000), DecisionTreeClassifier(max_depth=4, random_state=0)):
        model = make_pipeline(StandardScaler(), final).fit(x, y)
        compiled = compile_proba(model)
        assert compiled is not None
        assert np.abs(compiled(x) - model.predict_proba(x)).max() <= TOLERANCE


@pytest.mark.parametrize(
    "model",
    [
        make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=1000)),
        make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0)),
    ],
    ids=["unknown-transformer", "unknown-classifier"],
)
def test_unknown_estimators_keep_predict_proba(model) -> None:
    model.fit(WINE, load_wine().target)
    assert compile_proba(model) is None
    assert checked(model, WINE[:5]) is None


def test_binary_logistic_regression_keeps_predict_proba() -> None:
    # One-vs-rest probabilities (two classes) are scikit-learn's own business.
    x, y = make_classification(n_samples=100, n_features=4, random_state=0)
    assert compile_proba(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)) is None


def test_a_compiled_path_that_disagrees_is_not_used(monkeypatch, tmp_path) -> None:
    import app.compiled_model

    model, metadata = train()
    exact = compile_proba(model)
    assert checked(model, WINE[:10]) is not None
    monkeypatch.setattr(app.compiled_model, "compile_proba", lambda estimator: lambda x: exact(x) + 1e-9)
    assert checked(model, WINE[:10]) is None
    write_artefact(model, metadata, tmp_path)
    served = load(tmp_path)  # falls back to predict_proba: answers exact despite the broken compiled path
    assert np.array_equal(served.predict(WINE).probabilities, model.predict_proba(WINE))


def test_served_model_answers_as_predict_proba(tmp_path) -> None:
    write_artefact(*train(), tmp_path)
    served = load(tmp_path)
    rows = np.ascontiguousarray(WINE, dtype=float)
    assert np.abs(served.predict(rows).probabilities - served.estimator.predict_proba(rows)).max() <= TOLERANCE


def test_a_compiled_path_that_fails_is_not_used(monkeypatch) -> None:
    import app.compiled_model

    def broken(x):
        raise IndexError("misread estimator")

    monkeypatch.setattr(app.compiled_model, "compile_proba", lambda estimator: broken)
    assert checked(train()[0], WINE[:10]) is None


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_a_wider_model_with_drift_bins_on_a_subset_takes_the_compiled_path(estimator: str, tmp_path) -> None:
    from app.train import synthetic

    data = synthetic(features=40, classes=5)
    model, metadata = train(0, estimator, data, drift_features=6)
    write_artefact(model, metadata, tmp_path)
    served = load(tmp_path)
    assert served.drift_columns is not None and len(served.drift_columns) == 6
    assert served.proba.__qualname__.startswith("compile_proba"), "the compiled path, not predict_proba"
    rows = np.ascontiguousarray(data.data, dtype=float)
    assert np.abs(served.predict(rows).probabilities - model.predict_proba(rows)).max() <= TOLERANCE
