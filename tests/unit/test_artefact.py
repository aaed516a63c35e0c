"""An artefact that is not what its metadata says is never served: the model file's SHA-256 is checked before
anything is unpickled, the unpickled object must be a fitted classifier of the metadata's width and classes, and
every failure keeps the app unready with a reason from a fixed set and no path or exception text in any answer."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from app.factory import create_app
from app.model import (
    METADATA_FILE,
    MODEL_FILE,
    UNAVAILABLE_REASONS,
    ModelUnavailable,
    file_sha256,
    load,
)
from app.train import synthetic, train, write_artefact
from harness.load import ROW


class Liar:
    """Looks like a fitted three-class classifier of 13 features, but cannot predict."""

    n_features_in_ = 13
    classes_ = (0, 1, 2)

    def predict_proba(self, rows):
        raise RuntimeError("secret internal detail")


class Trap:
    """Unpickling it creates a file: proof of whether the loader unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _reseal(artefact: Path) -> None:
    """Record the model file's digest in the metadata, as someone who can write both files would."""
    metadata = json.loads((artefact / METADATA_FILE).read_text())
    metadata["model_sha256"] = file_sha256((artefact / MODEL_FILE).read_bytes())
    (artefact / METADATA_FILE).write_text(json.dumps(metadata))


def _edit_metadata(artefact: Path, change: Callable[[dict], object]) -> None:
    metadata = json.loads((artefact / METADATA_FILE).read_text())
    change(metadata)
    (artefact / METADATA_FILE).write_text(json.dumps(metadata))


@pytest.fixture(scope="module")
def other_models(tmp_path_factory) -> dict[str, Path]:
    """Another wine model (seed 7) and a 20-feature one, each a complete artefact of its own."""
    out = tmp_path_factory.mktemp("others")
    write_artefact(*train(seed=7), out / "seed7")
    write_artefact(*train(dataset=synthetic(20)), out / "wide")
    return {"seed7": out / "seed7", "wide": out / "wide"}


def _damage(kind: str, artefact: Path, others: dict[str, Path]) -> None:
    model = artefact / MODEL_FILE
    if kind == "swapped_for_another_model":
        shutil.copy(others["seed7"] / MODEL_FILE, model)
    elif kind == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    elif kind == "truncated_and_resealed":
        model.write_bytes(model.read_bytes()[:1000])
        _reseal(artefact)
    elif kind == "a_dict_resealed":
        joblib.dump({"coef": [1.0]}, model)
        _reseal(artefact)
    elif kind == "unfitted_estimator_resealed":
        joblib.dump(LogisticRegression(), model)
        _reseal(artefact)
    elif kind == "estimator_that_raises_resealed":
        joblib.dump(Liar(), model)
        _reseal(artefact)
    elif kind == "wider_model_resealed":
        shutil.copy(others["wide"] / MODEL_FILE, model)
        _reseal(artefact)
    elif kind == "no_checksum":
        _edit_metadata(artefact, lambda m: m.pop("model_sha256"))
    elif kind == "checksum_not_a_string":
        _edit_metadata(artefact, lambda m: m.update(model_sha256=7))
    elif kind == "metadata_not_json":
        (artefact / METADATA_FILE).write_bytes(b"\xff{not json")
    elif kind == "metadata_a_list":
        (artefact / METADATA_FILE).write_text("[]")
    elif kind == "metadata_without_classes":
        _edit_metadata(artefact, lambda m: m.pop("class_names"))
    elif kind == "metadata_with_feature_names_a_number":
        _edit_metadata(artefact, lambda m: m.update(feature_names=13))
    elif kind == "model_file_missing":
        model.unlink()
    elif kind == "model_file_a_directory":
        model.unlink()
        model.mkdir()
    else:
        raise ValueError(kind)


EXPECTED = {
    "swapped_for_another_model": "checksum_mismatch",
    "truncated": "checksum_mismatch",
    "truncated_and_resealed": "unreadable",
    "a_dict_resealed": "not_an_estimator",
    "unfitted_estimator_resealed": "not_an_estimator",
    "estimator_that_raises_resealed": "not_an_estimator",
    "wider_model_resealed": "metadata_mismatch",
    "no_checksum": "checksum_missing",
    "checksum_not_a_string": "checksum_missing",
    "metadata_not_json": "unreadable",
    "metadata_a_list": "unreadable",
    "metadata_without_classes": "unreadable",
    "metadata_with_feature_names_a_number": "unreadable",
    "model_file_missing": "missing",
    "model_file_a_directory": "unreadable",
}


@pytest.mark.parametrize("kind", EXPECTED)
def test_a_bad_artefact_keeps_the_app_unready_with_a_fixed_reason_and_no_server_text(
    model_dir: Path, tmp_path: Path, other_models: dict[str, Path], kind: str, caplog
):
    artefact = tmp_path / "model"
    shutil.copytree(model_dir, artefact)
    _damage(kind, artefact, other_models)

    with pytest.raises(ModelUnavailable) as refused:
        load(artefact)
    assert refused.value.reason == EXPECTED[kind]

    client = create_app(model_dir=artefact, instrumented=True).test_client()
    assert client.get("/healthz").status_code == 200
    answers = [
        client.get("/readyz"),
        client.get("/model"),
        client.post("/predict", json={"instances": [ROW]}),
        client.post("/feedback", json={"feedback": []}),
    ]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json == {"error": "model_unavailable", "detail": EXPECTED[kind]}
        text = answer.get_data(as_text=True)
        assert str(tmp_path) not in text and "Error" not in text and "secret" not in text
    assert EXPECTED[kind] in UNAVAILABLE_REASONS
    # The log says where and why, for the operator.
    assert any(str(artefact) in r.getMessage() for r in caplog.records if r.name == "app.model")


def test_a_swapped_model_file_is_not_unpickled(model_dir: Path, tmp_path: Path):
    artefact = tmp_path / "model"
    shutil.copytree(model_dir, artefact)
    marker = tmp_path / "unpickled"
    joblib.dump(Trap(marker), artefact / MODEL_FILE)
    with pytest.raises(ModelUnavailable) as refused:
        load(artefact)
    assert refused.value.reason == "checksum_mismatch"
    assert not marker.exists(), "the loader unpickled a file whose digest did not match"
    # The check is what stopped it: resealed, the same file is unpickled (and then refused as no estimator).
    _reseal(artefact)
    with pytest.raises(ModelUnavailable) as refused:
        load(artefact)
    assert marker.exists() and refused.value.reason == "not_an_estimator"


def test_a_good_artefact_records_the_digest_of_its_model_file(model_dir: Path):
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    assert metadata["model_sha256"] == file_sha256((model_dir / MODEL_FILE).read_bytes())
    assert load(model_dir).version == metadata["version"]


def test_an_artefact_repaired_in_place_is_served_without_a_restart(model_dir: Path, tmp_path: Path, monkeypatch):
    artefact = tmp_path / "model"
    shutil.copytree(model_dir, artefact)
    good = (artefact / MODEL_FILE).read_bytes()
    (artefact / MODEL_FILE).write_bytes(good[:100])
    monkeypatch.setattr("app.model_state.RETRY_SECONDS", 0.0)
    client = create_app(model_dir=artefact, instrumented=False).test_client()
    assert client.get("/readyz").json["detail"] == "checksum_mismatch"
    (artefact / MODEL_FILE).write_bytes(good)
    assert client.get("/readyz").status_code == 200
