"""gunicorn's logger, building only the access-log atoms the format uses (``logger_class`` in gunicorn.conf.py).

For every request gunicorn's ``Logger.atoms`` formats a timestamp and copies every request header, response
header and WSGI environ entry into a dict (about 40 entries) that a five-field format then mostly ignores.
This logger builds the fields the configured ``access_log_format`` names, when they are all among the
simple ones below, with the same values gunicorn would give; any other format (a header, an environ entry,
the timestamp) gets gunicorn's own atoms. Still one line per request, through the same handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gunicorn import glogging


def _status(resp: Any, environ: dict, request_time: Any) -> str:
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(resp: Any, environ: dict, request_time: Any) -> str:
    sent = getattr(resp, "sent", None)
    return str(sent) if sent is not None else "-"


# The atoms gunicorn computes the same way (glogging.Logger.atoms), from the response, environ and duration.
SIMPLE: dict[str, Callable[[Any, dict, Any], Any]] = {
    "h": lambda resp, environ, rt: environ.get("REMOTE_ADDR", "-"),
    "r": lambda resp, environ, rt: f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
    "s": _status,
    "m": lambda resp, environ, rt: environ.get("REQUEST_METHOD"),
    "U": lambda resp, environ, rt: environ.get("PATH_INFO"),
    "q": lambda resp, environ, rt: environ.get("QUERY_STRING"),
    "H": lambda resp, environ, rt: environ.get("SERVER_PROTOCOL"),
    "b": _sent,
    "B": lambda resp, environ, rt: getattr(resp, "sent", None),
    "T": lambda resp, environ, rt: rt.seconds,
    "D": lambda resp, environ, rt: rt.seconds * 1000000 + rt.microseconds,
    "M": lambda resp, environ, rt: rt.seconds * 1000 + int(rt.microseconds / 1000),
    "L": lambda resp, environ, rt: f"{rt.seconds}.{rt.microseconds:06d}",
}
_KEY = re.compile(r"%\(([^)]*)\)")


class AccessLogger(glogging.Logger):
    _simple: list[tuple[str, Callable[[Any, dict, Any], Any]]] | None = None

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        keys = _KEY.findall(cfg.access_log_format)
        self._simple = [(key, SIMPLE[key]) for key in keys] if set(keys) <= SIMPLE.keys() else None

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict:
        if self._simple is None:
            return super().atoms(resp, req, environ, request_time)
        return {key: atom(resp, environ, request_time) for key, atom in self._simple}
