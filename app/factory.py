"""The app factory: configuration, error handling and security headers around the API blueprint.

Importing this module imports prometheus_client (through ``app.metrics``): under gunicorn,
``app/gunicorn.conf.py`` has set ``PROMETHEUS_MULTIPROC_DIR`` by then (docs/metrics.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app import metrics
from app.errors import HTTP_ERROR_CODES, INTERNAL_ERROR, OTHER_HTTP_ERROR
from app.instrumentation import instrument
from app.json_provider import OrjsonProvider
from app.model_state import ModelState
from app.routes import api
from app.unread_body import drain_after
from app.validation import MAX_BODY_BYTES, InvalidInput

log = logging.getLogger("app")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in {"0", "false", "no", "off", ""}


def create_app(model_dir: Path | None = None, instrumented: bool | None = None) -> Flask:
    """Build the service. Defaults come from ``MODEL_DIR`` (``model``) and ``METRICS_ENABLED`` (on)."""
    app = Flask(__name__, static_folder=None)  # the API serves no files: no /static/<path> route
    app.debug = False  # Flask took FLASK_DEBUG from the environment just above; production never runs debug
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json = OrjsonProvider(app)
    if instrumented is None:
        instrumented = _env_flag("METRICS_ENABLED", True)
    if model_dir is None:
        model_dir = Path(os.environ.get("MODEL_DIR", "model"))

    if instrumented:
        instrument(app)
        metrics.initialise_invalid_reasons()
    app.extensions["model_state"] = ModelState(model_dir, instrumented=instrumented)
    app.register_blueprint(api)

    @app.errorhandler(InvalidInput)
    def _invalid(exc: InvalidInput):
        if instrumented:
            metrics.invalid_requests.labels(exc.reason).inc()
        response = jsonify(error=exc.reason, detail=exc.detail)
        return (drain_after(response) if exc.status == 413 else response), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = HTTP_ERROR_CODES.get(exc.code or 0, OTHER_HTTP_ERROR)
        response = jsonify(error=code, detail=exc.description)
        if exc.code == 413:
            drain_after(response)
            if instrumented:
                metrics.invalid_requests.labels("body_too_large").inc()
        return response, exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The trace goes to the log, never to the client.
        log.exception("unhandled error")
        return jsonify(error=INTERNAL_ERROR, detail="the server failed to handle the request"), 500

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    return app
