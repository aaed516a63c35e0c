"""The Flask app in-process: answers, refusals and what each one counts."""

import json

import pytest
from prometheus_client import REGISTRY

from app.factory import create_app
from app.metrics import INVALID_REASONS
from app.validation import MAX_BODY_BYTES, MAX_ROWS
from harness.load import ROW


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def test_predict_rows_as_lists_and_objects_agree(client, app):
    names = app.extensions["model_state"].model.feature_names
    as_list = post(client, {"instances": [ROW, ROW]})
    as_objects = post(client, {"instances": [dict(zip(names, ROW, strict=True))] * 2})
    assert as_list.status_code == as_objects.status_code == 200
    # Equal but for the receipt, which seals a random nonce and the issue time as well.
    assert {**as_list.json, "receipt": None} == {**as_objects.json, "receipt": None}
    assert as_list.json["predictions"] == ["class_2", "class_2"]
    assert len(as_list.json["probabilities"][0]) == 3
    assert as_list.json["model_version"] == app.extensions["model_state"].model.version


def test_predictions_are_counted_by_class(client, app):
    version = app.extensions["model_state"].model.version
    before = sample("model_predictions_total", model_version=version, predicted_class="class_2")
    recorder = app.extensions["model_state"].metrics
    recorder.flush()  # rows per batch are summed in the worker and written each second
    rows_before = sample("model_batch_rows_sum")
    post(client, {"instances": [ROW] * 5})
    assert sample("model_predictions_total", model_version=version, predicted_class="class_2") == before + 5
    recorder.flush()
    assert sample("model_batch_rows_sum") == rows_before + 5


def test_every_input_value_is_counted_in_a_bin(client, app):
    recorder = app.extensions["model_state"].metrics

    def total():
        recorder.flush()  # input values are summed in the worker and written in the background
        return sum(
            s.value
            for m in REGISTRY.collect()
            if m.name == "model_input_feature_bin"
            for s in m.samples
            if s.name.endswith("_total")
        )

    for rows in (1, 4, 5, 200):
        before = total()
        assert post(client, {"instances": [ROW] * rows}).status_code == 200
        assert total() == before + rows * 13


BAD = [
    ("unsupported_media_type", 415, {"instances": [ROW]}, "text/plain"),
    ("invalid_json", 400, b"{not json", "application/json"),
    ("invalid_json", 400, b"\xff\xfe\x00", "application/json"),
    ("invalid_json", 400, b"[" * 100_000, "application/json"),
    ("not_an_object", 400, [ROW], "application/json"),
    ("missing_key", 400, {"rows": [ROW]}, "application/json"),
    ("unexpected_key", 400, {"instances": [ROW], "extra": 1}, "application/json"),
    ("not_a_list", 400, {"instances": "all of them"}, "application/json"),
    ("not_a_list", 400, {"instances": [7]}, "application/json"),
    ("empty_batch", 400, {"instances": []}, "application/json"),
    ("batch_too_large", 400, {"instances": [ROW] * (MAX_ROWS + 1)}, "application/json"),
    ("wrong_row_length", 400, {"instances": [ROW[:-1]]}, "application/json"),
    ("missing_feature", 400, {"instances": [{"alcohol": 1}]}, "application/json"),
    ("non_numeric", 400, {"instances": [[*ROW[:-1], "600"]]}, "application/json"),
    ("non_numeric", 400, {"instances": [[*ROW[:-1], True]]}, "application/json"),
    ("non_numeric", 400, {"instances": [[*ROW[:-1], None]]}, "application/json"),
    ("non_finite", 400, b'{"instances": [[NaN' + b", 1" * 12 + b"]]}", "application/json"),
    ("non_finite", 400, b'{"instances": [[-Infinity' + b", 1" * 12 + b"]]}", "application/json"),
    ("non_finite", 400, b'{"instances": [[1e999' + b", 1" * 12 + b"]]}", "application/json"),
    ("non_finite", 400, {"instances": [[10**400, *ROW[1:]]]}, "application/json"),
    ("body_too_large", 413, b" " * (MAX_BODY_BYTES + 1), "application/json"),
]


@pytest.mark.parametrize(
    ("reason", "status", "body", "content_type"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_gets_its_4xx_json_and_is_counted(client, reason, status, body, content_type):
    assert reason in INVALID_REASONS
    before = sample("model_invalid_requests_total", reason=reason)
    response = post(client, body, content_type)
    assert response.status_code == status
    assert response.json["error"] == reason
    assert response.json["detail"]
    assert sample("model_invalid_requests_total", reason=reason) == before + 1
    assert sample("http_requests_total", method="POST", route="/predict", status=str(status)) >= 1


def test_unknown_feature_key(client, app):
    names = app.extensions["model_state"].model.feature_names
    row = dict(zip(names, ROW, strict=True))
    row["colour"] = 1
    response = post(client, {"instances": [row]})
    assert (response.status_code, response.json["error"]) == (400, "unknown_feature")


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [("GET", "/no/such/path", 404, "not_found"), ("GET", "/predict", 405, "method_not_allowed")],
)
def test_routing_errors_are_json_and_use_fixed_labels(client, method, path, status, error):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.json["error"] == error
    # Routing failed, so there is no URL rule: both land on the one fixed route value.
    assert sample("http_requests_total", method=method, route="unmatched", status=str(status)) >= 1


def test_random_paths_and_methods_add_no_label_values(client):
    client.open("/x/1", method="BREW")
    client.open("/x/2", method="GET")
    series = {
        tuple(sorted(s.labels.items())) for m in REGISTRY.collect() if m.name == "http_requests" for s in m.samples
    }
    routes = {dict(labels)["route"] for labels in series}
    methods = {dict(labels)["method"] for labels in series}
    assert not any(r.startswith("/x") for r in routes)
    assert "BREW" not in methods
    assert "OTHER" in methods


def test_health_model_and_security_headers(client, app):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    meta = client.get("/model").json
    assert set(meta) >= {"name", "version", "feature_names", "class_names", "accuracy", "trained_at"}
    assert ready.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in ready.headers["Content-Security-Policy"]


def test_missing_model_fails_readiness_but_not_liveness(tmp_path, caplog):
    client = create_app(model_dir=tmp_path, instrumented=False).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["error"] == "model_unavailable"
    # A reason from the fixed set for clients; the path and the remedy in the log only.
    assert ready.json["detail"] == "missing"
    assert str(tmp_path) not in ready.get_data(as_text=True)
    assert post(client, {"instances": [ROW]}).status_code == 503
    assert any("readiness will fail" in r.getMessage() and "app.train" in r.getMessage() for r in caplog.records)


def test_server_errors_send_no_trace(model_dir, monkeypatch):
    app = create_app(model_dir=model_dir, instrumented=False)
    model = app.extensions["model_state"].model

    def explode(rows):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(type(model), "predict", lambda self, rows: explode(rows))
    response = post(app.test_client(), {"instances": [ROW]})
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "detail": "the server failed to handle the request"}
    assert b"secret" not in response.data
    assert not app.debug
