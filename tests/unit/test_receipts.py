"""Feedback across model versions, in-process: a pod counts feedback for another version of the deployment
when the item carries the receipt of its /predict answer, under that version; an invented version, a forged
receipt or one minted under another key is refused, counted, and adds no label value."""

from __future__ import annotations

import json
import secrets

import pytest
from prometheus_client import REGISTRY

from app.factory import create_app
from app.receipts import KEY_ENV, Receipts

KEY = secrets.token_hex(32)
ROW = [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]


@pytest.fixture(scope="module")
def canary_dir(tmp_path_factory):
    from app.train import train, write_artefact

    out = tmp_path_factory.mktemp("canary-model")
    write_artefact(*train(seed=7), out)
    return out


def _app(model_dir, monkeypatch, key: str | None):
    if key is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, key)
    return create_app(model_dir=model_dir, instrumented=True)


@pytest.fixture()
def stable(model_dir, monkeypatch):
    return _app(model_dir, monkeypatch, KEY).test_client()


@pytest.fixture()
def canary(canary_dir, monkeypatch):
    return _app(canary_dir, monkeypatch, KEY).test_client()


def cell(version, predicted, actual):
    labels = {"model_version": version, "predicted_class": predicted, "actual_class": actual}
    return REGISTRY.get_sample_value("model_feedback_total", labels) or 0.0


def refusals(reason):
    return REGISTRY.get_sample_value("model_invalid_requests_total", {"reason": reason})


def versions():
    return {s.labels["model_version"] for m in REGISTRY.collect() if m.name == "model_feedback" for s in m.samples}


def predict(client):
    response = client.post("/predict", json={"instances": [ROW]})
    assert response.status_code == 200
    return response.json


def feedback(client, answer, **override):
    item = {
        "predicted": answer["predictions"][0],
        "actual": "class_0",
        "model_version": answer["model_version"],
        "receipt": answer["receipt"],
        **override,
    }
    return client.post("/feedback", data=json.dumps({"feedback": [item]}), content_type="application/json")


def test_a_pod_counts_another_versions_feedback_under_that_version(stable, canary):
    answer = predict(canary)
    canary_version, stable_version = answer["model_version"], predict(stable)["model_version"]
    assert canary_version != stable_version
    cells = (canary_version, answer["predictions"][0], "class_0"), (stable_version, answer["predictions"][0], "class_0")
    before = [cell(*c) for c in cells]
    response = feedback(stable, answer)
    assert response.status_code == 200, response.json
    assert [cell(*c) for c in cells] == [before[0] + 1, before[1]]


def test_the_receipt_is_the_versions_own(stable, canary):
    # One receipt per version: every answer of a pod carries the same, and other pods' answers theirs.
    a, b, c = predict(canary), predict(canary), predict(stable)
    assert a["receipt"] == b["receipt"] != c["receipt"]
    assert Receipts(KEY).valid(a["model_version"], a["receipt"])


@pytest.mark.parametrize(
    "override",
    [
        {"model_version": "0123456789ab"},  # a version nobody served, with another version's receipt
        {"receipt": "0" * 32},
        {"receipt": 7},
        {"receipt": Receipts("k" * 64).issue("0123456789ab"), "model_version": "0123456789ab"},  # another key
    ],
    ids=["invented-version", "forged", "not-a-string", "other-key"],
)
def test_a_receipt_that_does_not_check_out_is_refused(stable, canary, override):
    before, known = refusals("invalid_receipt"), versions()
    response = feedback(stable, predict(canary), **override)
    assert (response.status_code, response.json["error"]) == (400, "invalid_receipt")
    assert refusals("invalid_receipt") == before + 1
    assert versions() == known


def test_another_version_without_a_receipt_is_refused(stable, canary):
    answer = predict(canary)
    before, known = refusals("model_version_mismatch"), versions()
    item = {"predicted": answer["predictions"][0], "actual": "class_0", "model_version": answer["model_version"]}
    response = stable.post("/feedback", json={"feedback": [item]})
    assert (response.status_code, response.json["error"]) == (400, "model_version_mismatch")
    assert refusals("model_version_mismatch") == before + 1
    assert versions() == known


def test_without_a_key_a_pod_issues_no_receipt_and_takes_its_own_version_only(model_dir, canary, monkeypatch):
    keyless = _app(model_dir, monkeypatch, None).test_client()
    assert "receipt" not in predict(keyless)
    response = feedback(keyless, predict(canary))
    assert (response.status_code, response.json["error"]) == (400, "model_version_mismatch")


def test_a_short_key_is_refused_at_start():
    with pytest.raises(ValueError, match=KEY_ENV):
        Receipts("too short")
