"""POST /feedback in-process: the confusion matrix it feeds and every refusal it makes."""

import json

import pytest
from prometheus_client import REGISTRY

from app.metrics import INVALID_REASONS
from app.validation import MAX_ROWS


@pytest.fixture()
def version(app):
    return app.extensions["model_state"].model.version


def cell(version, predicted, actual):
    labels = {"model_version": version, "predicted_class": predicted, "actual_class": actual}
    return REGISTRY.get_sample_value("model_feedback_total", labels)


def send(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/feedback", data=data, content_type=content_type)


def test_feedback_fills_the_confusion_matrix(client, version):
    before = {(p, a): cell(version, p, a) for p in ("class_0", "class_1") for a in ("class_0", "class_1")}
    items = [
        {"predicted": "class_0", "actual": "class_0", "model_version": version},
        {"predicted": "class_0", "actual": "class_1", "model_version": version},
        {"predicted": "class_0", "actual": "class_1", "model_version": version},
    ]
    response = send(client, {"feedback": items})
    assert response.status_code == 200
    assert response.json == {"accepted": 3, "model_version": version}
    assert cell(version, "class_0", "class_0") == before[("class_0", "class_0")] + 1
    assert cell(version, "class_0", "class_1") == before[("class_0", "class_1")] + 2
    assert cell(version, "class_1", "class_0") == before[("class_1", "class_0")]


def test_whole_matrix_and_training_accuracy_are_exported_from_the_start(app, version):
    classes = app.extensions["model_state"].model.class_names
    assert all(cell(version, p, a) is not None for p in classes for a in classes)
    accuracy = REGISTRY.get_sample_value("model_training_accuracy", {"model_version": version})
    assert accuracy == app.extensions["model_state"].model.metadata["accuracy"]


def item(version, **override):
    return {"predicted": "class_0", "actual": "class_1", "model_version": version, **override}


@pytest.mark.parametrize(
    ("reason", "body"),
    [
        ("missing_key", lambda v: {"items": [item(v)]}),
        ("unexpected_key", lambda v: {"feedback": [item(v)], "more": 1}),
        ("not_a_list", lambda v: {"feedback": item(v)}),
        ("empty_batch", lambda v: {"feedback": []}),
        ("batch_too_large", lambda v: {"feedback": [item(v)] * (MAX_ROWS + 1)}),
        ("invalid_feedback_item", lambda v: {"feedback": ["class_0"]}),
        ("invalid_feedback_item", lambda v: {"feedback": [{"predicted": "class_0", "actual": "class_0"}]}),
        ("invalid_feedback_item", lambda v: {"feedback": [item(v, extra=1)]}),
        ("unknown_class", lambda v: {"feedback": [item(v, actual="class_9")]}),
        ("unknown_class", lambda v: {"feedback": [item(v, predicted=0)]}),
        ("unknown_class", lambda v: {"feedback": [item(v, actual=["class_0"])]}),
        ("model_version_mismatch", lambda v: {"feedback": [item(v, model_version="0000")]}),
        ("model_version_mismatch", lambda v: {"feedback": [item(v, model_version=None)]}),
    ],
)
def test_bad_feedback_is_refused_counted_and_adds_no_label_value(client, version, reason, body):
    assert reason in INVALID_REASONS
    labels = {"reason": reason}
    before = REGISTRY.get_sample_value("model_invalid_requests_total", labels)
    response = send(client, body(version))
    assert response.status_code == 400
    assert response.json["error"] == reason
    assert REGISTRY.get_sample_value("model_invalid_requests_total", labels) == before + 1
    seen = {
        (s.labels["predicted_class"], s.labels["actual_class"], s.labels["model_version"])
        for m in REGISTRY.collect()
        if m.name == "model_feedback"
        for s in m.samples
    }
    assert {p for p, _, _ in seen} | {a for _, a, _ in seen} <= {"class_0", "class_1", "class_2"}
    # Other tests may have counted feedback for other real versions (tests/unit/test_receipts.py): none invented.
    assert version in {v for _, _, v in seen} and not {v for _, _, v in seen} & {"0000", "None"}


def test_a_batch_with_one_bad_item_counts_nothing(client, version):
    before = cell(version, "class_2", "class_2")
    body = {"feedback": [item(version, predicted="class_2", actual="class_2"), item(version, actual="nope")]}
    assert send(client, body).status_code == 400
    assert cell(version, "class_2", "class_2") == before


def test_feedback_needs_json(client, version):
    response = send(client, {"feedback": [item(version)]}, content_type="text/plain")
    assert (response.status_code, response.json["error"]) == (415, "unsupported_media_type")
    response = send(client, b"{", content_type="application/json")
    assert (response.status_code, response.json["error"]) == (400, "invalid_json")
