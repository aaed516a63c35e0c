"""Flask's JSON in and out through orjson: numpy arrays are written straight from their buffers.

orjson rather than msgspec because it serialises numpy arrays natively (no ``tolist()``, no Python call per
value) and its strict decoder is a drop-in front for ``json.loads`` in ``app.validation``.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider

OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class OrjsonProvider(JSONProvider):
    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        # Compact, keys in the order written, one trailing newline: what Flask's own provider sends.
        body = orjson.dumps(self._prepare_response_obj(args, kwargs), option=OPTIONS | orjson.OPT_APPEND_NEWLINE)
        return self._app.response_class(body, mimetype=self.mimetype)
