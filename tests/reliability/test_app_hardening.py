"""The app's own security: never in debug mode, no reload, no stack traces or echoed input to clients, security
headers on every answer (errors included), request bodies never written to the log."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from flask import Flask

from app.factory import SECURITY_HEADERS, create_app
from app.validation import MAX_BODY_BYTES
from declarations.manifests import render
from harness.load import BODY, ROW, host_port
from harness.server import ROOT

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


# ---- debug and reload ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["1", "true"])
def test_the_app_is_not_in_debug_mode_even_when_the_environment_asks(monkeypatch, model_dir, flag):
    # Flask reads FLASK_DEBUG when the app object is made: one stray variable in a pod spec would do it.
    monkeypatch.setenv("FLASK_DEBUG", flag)
    app = create_app(model_dir=model_dir, instrumented=False)
    assert app.debug is False
    assert not app.config["DEBUG"]
    assert getattr(app.wsgi_app, "__func__", None) is Flask.wsgi_app, "no middleware (debugger) wraps the app"


def _gunicorn_settings(tmp_path: Path) -> dict[str, str]:
    """`gunicorn --print-config` with THE config file: the settings gunicorn will really use."""
    result = subprocess.run(
        [GUNICORN, "--print-config", "-c", "app/gunicorn.conf.py", "app.wsgi:app"],
        cwd=ROOT,
        # Its own multiprocess dir and no model: reading the config must touch nothing shared.
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "MODEL_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))


def test_gunicorn_runs_without_reload_debug_output_or_spew(tmp_path):
    settings = _gunicorn_settings(tmp_path)
    assert settings["reload"] == "False"
    assert settings["spew"] == "False"
    assert settings["loglevel"] in {"info", "warning", "error", "critical"}
    assert settings["preload_app"] == "True"
    assert int(settings["graceful_timeout"]) <= 30


def test_nothing_in_the_image_or_the_pod_turns_debug_or_reload_on():
    container = next(o for o in render() if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    text = (ROOT / "Dockerfile").read_text() + yaml.safe_dump(container)
    for switch in ("FLASK_DEBUG", "FLASK_ENV", "--reload", "GUNICORN_CMD_ARGS", "--spew", "LOG_LEVEL=debug"):
        assert switch not in text, switch


# ---- what clients get back -------------------------------------------------------------------------------------


def test_a_server_error_sends_the_generic_json_with_the_security_headers(model_dir, monkeypatch):
    app = create_app(model_dir=model_dir, instrumented=False)
    model = app.extensions["model_state"].model

    def explode(self, rows):
        raise RuntimeError("/etc/secret-path line 42 in explode")

    monkeypatch.setattr(type(model), "predict", explode)
    response = app.test_client().post("/predict", json={"instances": [ROW]})
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "detail": "the server failed to handle the request"}
    assert b"secret-path" not in response.data and b"Traceback" not in response.data
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def _answers(app: str) -> dict[str, requests.Response]:
    json_ct = {"Content-Type": "application/json"}
    return {
        "200": requests.post(f"{app}/predict", data=BODY, headers=json_ct, timeout=5),
        "400": requests.post(f"{app}/predict", data=b"{", headers=json_ct, timeout=5),
        "404": requests.get(f"{app}/no/such/path", timeout=5),
        "405": requests.put(f"{app}/predict", timeout=5),
        "413": requests.post(f"{app}/predict", data=b" " * (MAX_BODY_BYTES + 1), headers=json_ct, timeout=10),
        "415": requests.post(f"{app}/predict", data=BODY, headers={"Content-Type": "text/plain"}, timeout=5),
        "healthz": requests.get(f"{app}/healthz", timeout=5),
    }


def test_every_answer_of_the_real_server_carries_the_security_headers(server):
    for case, response in _answers(server.app).items():
        if case.isdigit():
            assert response.status_code == int(case), case
        assert response.headers["Content-Type"] == "application/json", case
        missing = {name for name, value in SECURITY_HEADERS.items() if response.headers.get(name) != value}
        assert not missing, f"{case}: {missing}"
        # The server does not advertise what runs behind it beyond gunicorn's own name.
        assert "Werkzeug" not in response.headers.get("Server", "") and "Python" not in response.headers.get(
            "Server", ""
        )


def _raw_post(app: str, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*host_port(app), timeout=10)
    try:
        connection.request("POST", path, body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_request_bodies_are_neither_logged_nor_echoed(server):
    marker = f"MARKER-{uuid.uuid4().hex}"
    bodies = [
        ("/predict", json.dumps({"instances": [ROW], marker: 1}).encode(), "application/json", 400),
        ("/predict", f'{{"instances": [[{marker}'.encode(), "application/json", 400),
        ("/predict", json.dumps({"instances": [[marker] * 13]}).encode(), "application/json", 400),
        ("/predict", json.dumps({"instances": [{marker: 1}]}).encode(), "application/json", 400),
        ("/predict", json.dumps({"instances": [ROW]}).encode() + marker.encode(), "application/json", 400),
        ("/predict", marker.encode() * (MAX_BODY_BYTES // len(marker) + 1), "application/json", 413),
        ("/predict", marker.encode(), "text/plain", 415),
        ("/feedback", json.dumps({"feedback": [{"predicted": marker, "actual": marker, "model_version": marker}]})
         .encode(), "application/json", 400),
        ("/nowhere", marker.encode(), "application/json", 404),
    ]  # fmt: skip
    for path, body, content_type, status in bodies:
        got, answer = _raw_post(server.app, path, body, content_type)
        assert got == status, (path, content_type, answer[:200])
        assert marker.encode() not in answer, f"{path}: the answer echoes client input"
    log = server.log.read_text(errors="replace")
    # The log is live (the access lines of these requests are there), and the marker is not in it.
    assert log.count('"POST /predict HTTP/1.1" 400') >= 5
    assert marker not in log
