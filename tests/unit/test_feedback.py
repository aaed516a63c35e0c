"""POST /feedback in-process: the confusion matrix it feeds and every refusal it makes."""

import json

import pytest
from prometheus_client import REGISTRY

from app.metrics import INVALID_REASONS
from app.validation import MAX_ROWS
from harness.load import ROW


@pytest.fixture()
def version(app):
    return app.extensions["model_state"].model.version


def cell(version, predicted, actual):
    labels = {"model_version": version, "predicted_class": predicted, "actual_class": actual}
    return REGISTRY.get_sample_value("model_feedback_total", labels)


def send(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/feedback", data=data, content_type=content_type)


def predict(client, rows=1):
    response = client.post("/predict", json={"instances": [ROW] * rows})
    assert response.status_code == 200
    return response.json


def test_feedback_fills_the_confusion_matrix(client, version):
    answer = predict(client, 3)
    predicted = answer["predictions"][0]  # the same row three times: the same class
    others = [c for c in ("class_0", "class_1", "class_2") if c != predicted]
    before = {a: cell(version, predicted, a) for a in (predicted, *others)}
    items = [
        {"receipt": answer["receipt"], "row": 0, "actual": predicted},
        {"receipt": answer["receipt"], "row": 1, "actual": others[0]},
        {"receipt": answer["receipt"], "row": 2, "actual": others[0]},
    ]
    response = send(client, {"feedback": items})
    assert response.status_code == 200
    assert response.json == {"accepted": 3, "model_version": version}
    assert cell(version, predicted, predicted) == before[predicted] + 1
    assert cell(version, predicted, others[0]) == before[others[0]] + 2
    assert cell(version, predicted, others[1]) == before[others[1]]


def test_the_fields_of_clients_written_before_receipts_named_rows_are_taken_for_a_one_row_batch(client, version):
    answer = predict(client)
    predicted = answer["predictions"][0]
    before = cell(version, predicted, "class_0")
    item = {"predicted": predicted, "actual": "class_0", "model_version": version, "receipt": answer["receipt"]}
    assert send(client, {"feedback": [item]}).status_code == 200
    assert cell(version, predicted, "class_0") == before + 1


def test_whole_matrix_and_training_accuracy_are_exported_from_the_start(app, version):
    classes = app.extensions["model_state"].model.class_names
    assert all(cell(version, p, a) is not None for p in classes for a in classes)
    accuracy = REGISTRY.get_sample_value("model_training_accuracy", {"model_version": version})
    assert accuracy == app.extensions["model_state"].model.metadata["accuracy"]


def item(answer, **override):
    return {"receipt": answer["receipt"], "actual": "class_1", **override}


def other_class(answer):
    return next(c for c in ("class_0", "class_1", "class_2") if c != answer["predictions"][0])


@pytest.mark.parametrize(
    ("reason", "status", "body"),
    [
        ("missing_key", 400, lambda a: {"items": [item(a)]}),
        ("unexpected_key", 400, lambda a: {"feedback": [item(a)], "more": 1}),
        ("not_a_list", 400, lambda a: {"feedback": item(a)}),
        ("empty_batch", 400, lambda a: {"feedback": []}),
        ("batch_too_large", 400, lambda a: {"feedback": [item(a)] * (MAX_ROWS + 1)}),
        ("invalid_feedback_item", 400, lambda a: {"feedback": ["class_0"]}),
        ("invalid_feedback_item", 400, lambda a: {"feedback": [item(a, extra=1)]}),
        ("invalid_feedback_item", 400, lambda a: {"feedback": [item(a, row="0")]}),
        ("invalid_feedback_item", 400, lambda a: {"feedback": [item(a, row=True)]}),
        ("receipt_required", 400, lambda a: {"feedback": [{"predicted": "class_0", "actual": "class_0"}]}),
        ("unknown_class", 400, lambda a: {"feedback": [item(a, actual="class_9")]}),
        ("unknown_class", 400, lambda a: {"feedback": [item(a, actual=["class_0"])]}),
        ("receipt_mismatch", 400, lambda a: {"feedback": [item(a, row=1)]}),
        ("receipt_mismatch", 400, lambda a: {"feedback": [item(a, row=-1)]}),
        ("receipt_mismatch", 400, lambda a: {"feedback": [item(a, predicted=other_class(a))]}),
        ("model_version_mismatch", 400, lambda a: {"feedback": [item(a, model_version="0000")]}),
        ("model_version_mismatch", 400, lambda a: {"feedback": [item(a, model_version=None)]}),
        ("invalid_receipt", 400, lambda a: {"feedback": [item(a, receipt=a["receipt"][:-2])]}),
        ("invalid_receipt", 400, lambda a: {"feedback": [item(a, receipt="é" * 40)]}),
        ("invalid_receipt", 400, lambda a: {"feedback": [item(a, receipt=None)]}),
        ("receipt_replayed", 409, lambda a: {"feedback": [item(a), item(a)]}),
    ],
)
def test_bad_feedback_is_refused_counted_and_adds_no_label_value(client, version, reason, status, body):
    assert reason in INVALID_REASONS
    labels = {"reason": reason}
    before = REGISTRY.get_sample_value("model_invalid_requests_total", labels)
    answer = predict(client)
    counted = cell(version, answer["predictions"][0], "class_1")
    response = send(client, body(answer))
    assert response.status_code == status
    assert response.json["error"] == reason
    assert REGISTRY.get_sample_value("model_invalid_requests_total", labels) == before + 1
    assert cell(version, answer["predictions"][0], "class_1") == counted
    seen = {
        (s.labels["predicted_class"], s.labels["actual_class"], s.labels["model_version"])
        for m in REGISTRY.collect()
        if m.name == "model_feedback"
        for s in m.samples
    }
    assert {p for p, _, _ in seen} | {a for _, a, _ in seen} <= {"class_0", "class_1", "class_2"}
    # Other tests may have counted feedback for other real versions (tests/unit/test_receipts.py): none invented.
    assert version in {v for _, _, v in seen} and not {v for _, _, v in seen} & {"0000", "None"}
    # The refused request spent nothing: the same prediction's feedback is still taken once.
    assert send(client, {"feedback": [item(answer)]}).status_code == 200


def test_a_batch_with_one_bad_item_counts_nothing(client, version):
    answer = predict(client, 2)
    predicted = answer["predictions"][0]
    before = cell(version, predicted, "class_2")
    body = {"feedback": [item(answer, row=0, actual="class_2"), item(answer, row=1, actual="nope")]}
    assert send(client, body).status_code == 400
    assert cell(version, predicted, "class_2") == before


def test_feedback_needs_json(client):
    response = send(client, {"feedback": [item(predict(client))]}, content_type="text/plain")
    assert (response.status_code, response.json["error"]) == (415, "unsupported_media_type")
    response = send(client, b"{", content_type="application/json")
    assert (response.status_code, response.json["error"]) == (400, "invalid_json")
