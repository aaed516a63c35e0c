"""Every `error` code a refusal can carry: the `{"error": <code>, "detail": <sentence>}` shape's fixed set.

Clients and tests match on these codes; none is ever built from client text.
"""

from __future__ import annotations

from app.metrics import INVALID_REASONS

# Werkzeug's exceptions, made into stable machine-readable codes; any other HTTP error is `http_error`.
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}
OTHER_HTTP_ERROR = "http_error"
# No model to serve (503): its `detail` is a reason from app.model.UNAVAILABLE_REASONS.
MODEL_UNAVAILABLE = "model_unavailable"
# A refusal is 4xx with one of INVALID_REASONS (a body refused, counted by reason), an HTTP error, or 503.
REFUSAL_CODES = (
    frozenset(INVALID_REASONS) | frozenset(HTTP_ERROR_CODES.values()) | {OTHER_HTTP_ERROR, MODEL_UNAVAILABLE}
)
# Only a bug answers this (500): a test fails on it.
INTERNAL_ERROR = "internal_error"
