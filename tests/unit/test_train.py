import json

import numpy as np
import pytest

from app.model import METADATA_FILE, MODEL_FILE, ModelUnavailable, load
from app.train import main, reference_bins, wine
from harness.load import ROW


def test_training_writes_a_complete_artefact(model_dir):
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    assert metadata["name"] == "wine-logreg"
    assert len(metadata["feature_names"]) == 13
    assert metadata["class_names"] == ["class_0", "class_1", "class_2"]
    assert metadata["accuracy"] >= 0.9
    assert len(metadata["version"]) == 12
    for feature in metadata["reference"]["features"]:
        assert len(feature["bin_ratios"]) == len(feature["bin_edges"]) + 1
        assert sum(feature["bin_ratios"]) == pytest.approx(1.0)
        assert feature["bin_edges"] == sorted(feature["bin_edges"])
    assert sum(metadata["reference"]["class_ratios"]) == pytest.approx(1.0)


def test_training_again_gives_the_same_version_and_the_same_answers_within_rounding(model_dir, tmp_path):
    main(["--out", str(tmp_path)])
    first = json.loads((model_dir / METADATA_FILE).read_text())
    second = json.loads((tmp_path / METADATA_FILE).read_text())
    assert first["version"] == second["version"]
    assert first["training_inputs"] == second["training_inputs"]
    # Answers, not bits: the fitted floats are the same only where the BLAS kernel is (tests/unit/test_version.py).
    rows = wine().data
    assert np.allclose(
        load(model_dir).predict(rows).probabilities, load(tmp_path).predict(rows).probabilities, atol=1e-9
    )


def test_reference_bins_cover_the_real_line():
    column = np.arange(100, dtype=float)
    edges, ratios = reference_bins(column, bins=4)
    assert len(edges) == 3
    assert ratios == pytest.approx([0.25, 0.25, 0.25, 0.25])


def test_reference_bins_collapse_repeated_quantiles():
    edges, ratios = reference_bins(np.array([1.0] * 90 + [2.0] * 10), bins=10)
    assert edges == [1.0, 2.0] or len(edges) < 9
    assert sum(ratios) == pytest.approx(1.0)


def test_loaded_model_predicts_and_bins(model_dir):
    model = load(model_dir)
    rows = np.array([ROW] * 3)
    result = model.predict(rows)
    assert result.labels == ["class_2"] * 3
    assert result.probabilities.shape == (3, 3)
    assert np.allclose(result.probabilities.sum(axis=1), 1)
    assert result.bin_indices.shape == (3, 13)
    assert (result.bin_indices >= 0).all()
    assert result.inference_seconds > 0


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_artefact_says_why(model_dir, tmp_path, damage):
    (tmp_path / METADATA_FILE).write_text((model_dir / METADATA_FILE).read_text())
    if damage == "corrupt":
        (tmp_path / MODEL_FILE).write_bytes(b"not a pickle")
    with pytest.raises(ModelUnavailable, match=r"model\.joblib") as refused:
        load(tmp_path)
    assert refused.value.reason == {"missing": "missing", "corrupt": "checksum_mismatch"}[damage]


def test_another_seed_or_estimator_makes_another_version_and_the_default_stays(model_dir, tmp_path):
    default = json.loads((model_dir / METADATA_FILE).read_text())
    versions = {default["version"]}
    for args in (["--seed", "7"], ["--estimator", "stump"]):
        out = tmp_path / "-".join(args)
        main(["--out", str(out), *args])
        metadata = json.loads((out / METADATA_FILE).read_text())
        versions.add(metadata["version"])
    assert len(versions) == 3
    # The stump is the deliberately weak model: a canary test needs it clearly worse than the default.
    stump = json.loads((tmp_path / "--estimator-stump" / METADATA_FILE).read_text())
    assert stump["name"] == "wine-stump" and stump["accuracy"] < default["accuracy"] - 0.2
