"""The access logger writes the same fields gunicorn's own logger would, building only those the format names."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path
from types import SimpleNamespace

from gunicorn import glogging
from gunicorn.config import Config

from app.access_log import SIMPLE, AccessLogger

ENVIRON = {
    "REMOTE_ADDR": "10.1.2.3",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/predict?x=1",
    "PATH_INFO": "/predict",
    "QUERY_STRING": "x=1",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_USER_AGENT": "wrk",
}
RESPONSE = SimpleNamespace(status="200 OK", sent=123, headers=[("Content-Type", "application/json")])
REQUEST = SimpleNamespace(headers=[("USER-AGENT", "wrk")])
DURATION = datetime.timedelta(seconds=1, microseconds=234567)


def _config(log_format: str) -> Config:
    cfg = Config()
    cfg.set("access_log_format", log_format)
    cfg.set("accesslog", "-")
    return cfg


def _line(logger_class: type, log_format: str) -> str:
    logger = logger_class(_config(log_format))
    atoms = logger.atoms_wrapper_class(logger.atoms(RESPONSE, REQUEST, ENVIRON, DURATION))
    return log_format % atoms


def test_every_simple_atom_equals_gunicorns() -> None:
    log_format = " ".join(f"%({key})s" for key in SIMPLE)
    assert _line(AccessLogger, log_format) == _line(glogging.Logger, log_format)


def _settings() -> dict:
    """Constant settings of app/gunicorn.conf.py, read without running it (running it sets the environment)."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "app" / "gunicorn.conf.py").read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def test_the_configured_format_gives_gunicorns_line() -> None:
    settings = _settings()
    assert settings["logger_class"] == "app.access_log.AccessLogger"
    log_format = settings["access_log_format"]
    line = _line(AccessLogger, log_format)
    assert line == _line(glogging.Logger, log_format) == '10.1.2.3 "POST /predict?x=1 HTTP/1.1" 200 123 1234ms'


def test_other_formats_fall_back_to_gunicorns_atoms() -> None:
    log_format = "%(h)s %({user-agent}i)s %(t)s"
    ours = AccessLogger(_config(log_format)).atoms(RESPONSE, REQUEST, ENVIRON, DURATION)
    assert ours.keys() == glogging.Logger(_config(log_format)).atoms(RESPONSE, REQUEST, ENVIRON, DURATION).keys()
    assert _line(AccessLogger, log_format).split()[:2] == ["10.1.2.3", "wrk"]
