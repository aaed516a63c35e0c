"""The HTTP API: predictions, model metadata, liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.errors import MODEL_UNAVAILABLE
from app.model_state import ModelState
from app.validation import MAX_BODY_BYTES, InvalidInput, decode_json_object, parse_feedback, parse_instances

api = Blueprint("api", __name__)


def _state() -> ModelState:
    return current_app.extensions["model_state"]


def _unavailable(state: ModelState):
    # `detail` is a reason from app.model.UNAVAILABLE_REASONS: never a path or an exception's text.
    return jsonify(error=MODEL_UNAVAILABLE, detail=state.error), 503


def _json_body() -> tuple[dict, bytes]:
    body = request.get_data(cache=False)
    # werkzeug stops a streamed (chunked) body AT MAX_CONTENT_LENGTH and returns what it read: look one byte on.
    if len(body) >= MAX_BODY_BYTES and request.content_length is None and request.environ["wsgi.input"].read(1):
        raise InvalidInput("body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes", 413)
    return decode_json_object(body, request.mimetype), body


@api.get("/healthz")
def healthz():
    # Liveness touches nothing: a missing model is a readiness problem, restarting would not fix it.
    return jsonify(status="ok")


@api.get("/readyz")
def readyz():
    state = _state()
    model = state.try_load()
    if model is None:
        return _unavailable(state)
    return jsonify(status="ready", model_version=model.version)


@api.get("/model")
def model_metadata():
    state = _state()
    if state.model is None:
        return _unavailable(state)
    return jsonify(state.model.public_metadata())


@api.post("/predict")
def predict():
    state = _state()
    model = state.try_load()  # not only readiness: a model that arrived late must reach every worker
    if model is None:
        return _unavailable(state)
    payload, body = _json_body()
    rows = parse_instances(payload, model.feature_names, body)
    result = model.predict(rows)
    if state.metrics is not None:
        state.metrics.observe_batch(
            result.bin_indices,
            result.class_indices,
            result.probabilities.max(axis=1),
            result.inference_seconds,
        )
    answer = {
        "predictions": result.labels,
        "probabilities": result.probabilities.round(6),
        "model_version": model.version,
        # What feedback on these rows must carry (app/receipts.py): the version and each row's class, sealed.
        "receipt": state.receipts.issue(model.version, result.class_indices, len(model.class_names)),
    }
    return jsonify(answer)


@api.post("/feedback")
def feedback():
    """Ground truth for earlier predictions, each named by its /predict answer's receipt and row: counted once
    per pod, under the version and predicted class the receipt seals (app/receipts.py)."""
    state = _state()
    model = state.try_load()  # not only readiness: a model that arrived late must reach every worker
    if model is None:
        return _unavailable(state)
    pairs = parse_feedback(_json_body()[0], model.class_names, state.receipts)
    if state.metrics is not None:
        state.metrics.observe_feedback(pairs)
    return jsonify(accepted=len(pairs), model_version=model.version)
