"""A 500-feature model: drift bins only for the features it leans on most, served by THE gunicorn command, and a
drifted monitored feature still raising the drift alert through the real rules (promtool)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from alerts.rules import JOB, NAMESPACE
from app.metrics import MODEL_INPUT_FEATURE_BIN_TOTAL, MODEL_REFERENCE_FEATURE_BIN_RATIO
from app.model import METADATA_FILE, load
from app.train import DRIFT_FEATURES, importances, main, synthetic
from declarations.manifests import RenderError, render, rule_groups
from harness.exposition import by_name
from tests.availability import unavailable

FEATURES = 500
SERIES_PER_POD = 1500  # the bound docs/scale.md derives and benchmarks.scale measures
ROWS = 200
FIRING_DRIFT = 'ALERTS{alertstate="firing", alertname=~".*InputDrift.*"}'


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide-model")
    main(["--out", str(out), "--dataset", "synthetic", "--features", str(FEATURES)])
    return out


@pytest.fixture(scope="module")
def wide_metadata(wide_model: Path) -> dict:
    return json.loads((wide_model / METADATA_FILE).read_text())


def test_a_wide_model_records_the_features_it_leans_on_most(wide_metadata):
    data = synthetic(FEATURES)
    assert wide_metadata["feature_names"] == data.feature_names
    monitored = [f["name"] for f in wide_metadata["reference"]["features"]]
    assert len(monitored) == DRIFT_FEATURES < FEATURES
    assert wide_metadata["drift_features"]["monitored"] == DRIFT_FEATURES
    assert wide_metadata["drift_features"]["of"] == FEATURES
    columns = [data.feature_names.index(name) for name in monitored]
    assert columns == sorted(columns), "reference features are kept in column order"


def test_the_monitored_features_outweigh_every_other(wide_model, wide_metadata):
    model = load(wide_model)
    weights, how = importances(model.estimator, np.empty((0, FEATURES)), np.empty(0), 0)
    assert how == wide_metadata["drift_features"]["chosen_by"]
    chosen = model.drift_columns
    others = np.setdiff1d(np.arange(FEATURES), chosen)
    assert weights[chosen].min() >= weights[others].max()


def test_drift_features_is_configurable_and_a_narrow_model_keeps_every_feature(tmp_path):
    main(["--out", str(tmp_path / "narrow"), "--dataset", "synthetic", "--features", "30", "--drift-features", "30"])
    main(["--out", str(tmp_path / "few"), "--dataset", "synthetic", "--features", "30", "--drift-features", "7"])
    narrow = json.loads((tmp_path / "narrow" / METADATA_FILE).read_text())
    few = json.loads((tmp_path / "few" / METADATA_FILE).read_text())
    assert [f["name"] for f in narrow["reference"]["features"]] == narrow["feature_names"]
    assert "drift_features" not in narrow
    assert len(few["reference"]["features"]) == 7 and few["drift_features"]["monitored"] == 7


def _settled(server, rows: int, features: int, timeout: float = 10.0) -> dict:
    """The exposition once every accepted row's values reached the bin counters (they are flushed each second)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = by_name(server.scrape())
        counted = sum(v for _, v in samples.get(MODEL_INPUT_FEATURE_BIN_TOTAL, []))
        if counted == rows * features or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def _rows(n: int, seed: int) -> np.ndarray:
    data = synthetic(FEATURES)
    return data.data[np.random.default_rng(seed).integers(0, len(data.data), n)]


@pytest.fixture()
def wide_server(server_factory, wide_model):
    return server_factory(model=wide_model)


def test_the_exposition_has_bins_only_for_the_monitored_features_and_stays_bounded(wide_server, wide_metadata):
    monitored = {f["name"] for f in wide_metadata["reference"]["features"]}
    rows = _rows(ROWS, seed=1)
    for batch in np.array_split(rows, 4):
        response = requests.post(f"{wide_server.app}/predict", json={"instances": batch.tolist()}, timeout=10)
        assert response.status_code == 200, response.text
    # Rows keyed by name take the same path: all 500 features are inputs, 100 of them are binned.
    named = [dict(zip(wide_metadata["feature_names"], row, strict=True)) for row in _rows(1, seed=2).tolist()]
    assert requests.post(f"{wide_server.app}/predict", json={"instances": named}, timeout=10).status_code == 200
    samples = _settled(wide_server, ROWS + 1, len(monitored))
    assert {labels["feature"] for labels, _ in samples[MODEL_INPUT_FEATURE_BIN_TOTAL]} == monitored
    assert {labels["feature"] for labels, _ in samples[MODEL_REFERENCE_FEATURE_BIN_RATIO]} == monitored
    assert sum(v for _, v in samples[MODEL_INPUT_FEATURE_BIN_TOTAL]) == (ROWS + 1) * len(monitored)
    series = sum(len(found) for found in samples.values())
    assert series <= SERIES_PER_POD, f"{series} series on one pod of a {FEATURES}-feature model"


def test_a_drifted_monitored_feature_still_raises_the_drift_alert(wide_server, wide_model, wide_metadata, promtool,
                                                                  tmp_path):  # fmt: skip
    """Real bin counts of a shifted monitored feature, replayed at a steady rate through the real rules."""
    try:
        groups = rule_groups(render())
    except RenderError as exc:
        unavailable(str(exc))
    model = load(wide_model)
    feature = model.drift_feature_names[0]
    column = int(model.drift_columns[0])
    rows = _rows(ROWS, seed=3)
    rows[:, column] += 3 * synthetic(FEATURES).data[:, column].std()
    for batch in np.array_split(rows, 4):
        assert requests.post(f"{wide_server.app}/predict", json={"instances": batch.tolist()}, timeout=10).ok
    samples = _settled(wide_server, ROWS, len(model.drift_feature_names))
    counts = {labels["bin"]: v for labels, v in samples[MODEL_INPUT_FEATURE_BIN_TOTAL] if labels["feature"] == feature}
    ratios = {
        labels["bin"]: v for labels, v in samples[MODEL_REFERENCE_FEATURE_BIN_RATIO] if labels["feature"] == feature
    }
    # The counts' shape at 10 values a second: far over any volume gate, so only the shape decides.
    per_minute = {b: 600 * c / ROWS for b, c in counts.items()}
    target = f'namespace="{NAMESPACE}", job="{JOB}", pod="{JOB}-a", feature="{feature}"'
    series = [
        {"series": f'{MODEL_INPUT_FEATURE_BIN_TOTAL}{{{target}, bin="{b}"}}', "values": f"0+{per_minute[b]:g}x40"}
        for b in ratios
    ] + [
        {"series": f'{MODEL_REFERENCE_FEATURE_BIN_RATIO}{{{target}, bin="{b}"}}', "values": f"{r:g}x40"}
        for b, r in ratios.items()
    ]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": f"count by (alertname, feature) ({FIRING_DRIFT})",
                        "eval_time": "30m",
                        "exp_samples": [
                            {"labels": f'{{alertname="WineClassifierInputDriftHigh", feature="{feature}"}}', "value": 1}
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False, width=1 << 20))
    done = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
