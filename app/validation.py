"""Turning a request body into a feature matrix, or into one of a fixed set of refusals.

Every refusal carries a reason from ``app.metrics.INVALID_REASONS`` (the metric label) and a sentence for
the client. Nothing here echoes client text back into a label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from app.receipts import Receipt, ReceiptRefused, Receipts

MAX_ROWS = 256
# 256 rows of 13 features written as objects with long keys stay well under this.
MAX_BODY_BYTES = 1024 * 1024
# Finite, but near the float maximum a value overflows once the model scales it (x / std): refuse it here.
MAX_MAGNITUDE = 1e300


class InvalidInput(Exception):
    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity by default; JSON itself does not.
    raise InvalidInput("non_finite", f"{name} is not a finite number")


def decode_json_object(body: bytes, mimetype: str | None) -> dict[str, Any]:
    if mimetype != "application/json":
        raise InvalidInput("unsupported_media_type", "send the body as Content-Type: application/json", 415)
    try:
        # orjson accepts strict RFC 8259 JSON only, a subset of what json.loads reads, and decodes it to the same
        # values, except that an integer beyond 64 bits becomes the nearest float (as in JavaScript), not a Python
        # int. Whatever it refuses (NaN, UTF-16, a lone surrogate, deep nesting...) json.loads then judges as it
        # always has, so every refusal keeps its reason.
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = _careful_loads(body)
    else:
        # orjson keeps the last of duplicate keys without a word: look again where one may hide.
        if not _free_of_duplicates(body, payload):
            _careful_loads(body)
    if not isinstance(payload, dict):
        raise InvalidInput("not_an_object", "the body must be a JSON object")
    return payload


def _free_of_duplicates(body: bytes, payload: Any) -> bool:
    """True only when `body` cannot hold a duplicate key; False means "parse it carefully", not "it has one".

    Every key in the body is followed by a colon and every other colon is inside a string, so the body's colons
    are at least its keys, which are at least the keys decoding kept (fewer when it dropped a duplicate). A count
    of kept keys that reaches the body's colons therefore proves that nothing was dropped, and an undercount only
    sends a body on to the next test. In order of cost:
      - at most one colon: at most one key (`{"instances": [[...], ...]}`, the usual body);
      - the top level's keys, plus the keys of objects directly inside its values (rows as objects): counted with
        `len`, no Python-level walk;
      - orjson writing the decoded value back out: one colon per kept key plus the colons of the kept strings,
        so as many as the body exactly when no key was dropped, provided no string of the body writes a
        character by its code (`\\u003a` is a colon).
    """
    if body.find(b":", body.find(b":") + 1) < 0:  # memchr, twice: a fraction of a microsecond at 256 rows
        return True
    colons = _count_colons(body)
    if colons == _shallow_keys(payload):
        return True
    if b"\\u" in body:
        return False
    try:
        return orjson.dumps(payload).count(b":") == colons
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return False


def _count_colons(body: bytes) -> int:
    # bytes.count walks byte by byte: a vectorised comparison takes a quarter of its time on a 70 kB body, but
    # costs more than it saves on a short one.
    if len(body) < _VECTOR_FROM:
        return body.count(b":")
    return int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _COLON))


_COLON = ord(":")
_VECTOR_FROM = 4096


def _shallow_keys(payload: Any) -> int:
    """Keys of the top-level object and of objects one or two levels inside it: never more than it holds."""
    if type(payload) is not dict:
        return 0
    keys = len(payload)
    for value in payload.values():
        if type(value) is dict:
            keys += len(value)
        elif type(value) is list and value and set(map(type, value)) == _DICT_ONLY:
            keys += sum(map(len, value))
    return keys


_DICT_ONLY = {dict}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise InvalidInput("duplicate_key", "an object in the body has the same key twice")
    return value


def _careful_loads(body: bytes) -> Any:
    """json.loads refusing duplicate keys at every level, and NaN and Infinity."""
    try:
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidInput("invalid_json", "the body is not valid JSON") from exc


def require_keys(payload: dict[str, Any], key: str) -> Any:
    if key not in payload:
        raise InvalidInput("missing_key", f'the body must have the key "{key}"')
    if len(payload) != 1:
        raise InvalidInput("unexpected_key", f'the body must have only the key "{key}"')
    return payload[key]


def _number(value: Any, where: str) -> float:
    # bool is an int subclass: true/false are not measurements.
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidInput("non_finite", f"{where} is not a finite number")
        if abs(value) > MAX_MAGNITUDE:
            raise InvalidInput("non_finite", f"{where} is too large")
        return value
    if type(value) is int:
        if abs(value) > MAX_MAGNITUDE:
            raise InvalidInput("non_finite", f"{where} is too large")
        return float(value)
    raise InvalidInput("non_numeric", f"{where} must be a number")


def parse_instances(payload: dict[str, Any], feature_names: Sequence[str], body: bytes | None = None) -> np.ndarray:
    """``{"instances": [...]}`` to a rows x features float matrix, rows as lists or as objects.

    `body`, the JSON text `payload` was decoded from, lets a batch free of literals skip a per-value type check.
    """
    instances = require_keys(payload, "instances")
    if not isinstance(instances, list):
        raise InvalidInput("not_a_list", '"instances" must be a list of rows')
    if not instances:
        raise InvalidInput("empty_batch", '"instances" must hold at least one row')
    if len(instances) > MAX_ROWS:
        raise InvalidInput("batch_too_large", f'"instances" may hold at most {MAX_ROWS} rows')
    rows = _as_matrix(instances, feature_names, body)
    if rows is not None:
        return rows
    # Not plainly valid: value by value, so that a refusal names its reason and the first row and feature at fault.
    return _parse_rows(instances, feature_names)


def _as_matrix(instances: list, feature_names: Sequence[str], body: bytes | None = None) -> np.ndarray | None:
    """The whole batch in one conversion and vectorised checks; None when any check fails.

    Only plainly valid batches pass: every row a list, or every row an object with exactly the model's
    features, and every value an int or a float (not a bool: numpy would read true as 1.0), finite and
    within ``MAX_MAGNITUDE``. Anything else goes value by value to ``_parse_rows``.
    """
    width = len(feature_names)
    kinds = set(map(type, instances))
    if kinds == {dict}:
        # All features present (else KeyError) and, with the total count of keys, no other key in any row.
        if sum(map(len, instances)) != width * len(instances):
            return None
        try:
            instances = list(map(itemgetter(*feature_names), instances))
        except KeyError:
            return None
    elif kinds != {list}:
        return None
    try:
        if body is not None and _only_numbers(body):
            # Numbers, lists and empty objects only, and numpy's own choice of type tells numbers (an int or a
            # float kind) from the rest: one pass over the values instead of two.
            rows = np.array(instances)
            if rows.dtype.kind not in "iuf":
                return None
            rows = rows.astype(np.float64, copy=False)
        elif set(map(type, chain.from_iterable(instances))) <= _NUMBER_TYPES:
            rows = np.array(instances, dtype=np.float64)
        else:
            return None
    except (ValueError, OverflowError):  # rows of different lengths; an int beyond the float range
        return None
    if rows.shape != (len(instances), width) or not np.isfinite(rows).all() or np.abs(rows).max() >= MAX_MAGNITUDE:
        return None
    return rows


def _only_numbers(body: bytes) -> bool:
    """True when the JSON text holds no string but its one key (two quotes: `{"instances": [...]}`) and no
    `true`, `false` or `null` (each has a "u" or an "l", which no number's text has): then every value in it
    is a number, a list or an empty object. Five memchr, about a microsecond at 256 rows.

    The strings matter for memory, not only for types: numpy makes a batch holding one long string an array of
    strings that long, one per value (a 1 MiB body could ask for 150 GiB).
    """
    second = body.find(b'"', body.find(b'"') + 1)
    return second >= 0 and body.find(b'"', second + 1) < 0 and b"u" not in body and b"l" not in body


_NUMBER_TYPES = frozenset({float, int})


def _parse_rows(instances: list, feature_names: Sequence[str]) -> np.ndarray:
    width = len(feature_names)
    rows = np.empty((len(instances), width), dtype=float)
    for i, row in enumerate(instances):
        if isinstance(row, list):
            if len(row) != width:
                raise InvalidInput("wrong_row_length", f"row {i} has {len(row)} values, the model takes {width}")
            values = row
        elif isinstance(row, dict):
            missing = [name for name in feature_names if name not in row]
            if missing:
                raise InvalidInput("missing_feature", f"row {i} lacks {len(missing)} feature(s), e.g. {missing[0]!r}")
            if len(row) != width:
                raise InvalidInput("unknown_feature", f"row {i} has keys that are not features of the model")
            values = [row[name] for name in feature_names]
        else:
            raise InvalidInput("not_a_list", f"row {i} must be a list of numbers or an object keyed by feature")
        for j, value in enumerate(values):
            rows[i, j] = _number(value, f"row {i}, feature {feature_names[j]!r}")
    return rows


RECEIPT_FIELD = "receipt"
REQUIRED_FEEDBACK_FIELDS = frozenset({RECEIPT_FIELD, "actual"})
# "row" may be left out for a one-row batch; "predicted" and "model_version", the fields of clients written before
# receipts named a prediction, are taken when they agree with the receipt and are never the source of a label.
OPTIONAL_FEEDBACK_FIELDS = frozenset({"row", "predicted", "model_version"})


def _check_item_fields(i: int, item: object) -> None:
    if not isinstance(item, dict) or not (
        REQUIRED_FEEDBACK_FIELDS <= item.keys() <= REQUIRED_FEEDBACK_FIELDS | OPTIONAL_FEEDBACK_FIELDS
    ):
        if isinstance(item, dict) and RECEIPT_FIELD not in item and "actual" in item:
            raise InvalidInput(
                "receipt_required", f'item {i} must carry the "receipt" of the /predict answer it is about'
            )
        raise InvalidInput(
            "invalid_feedback_item",
            f'item {i} must be an object with "receipt", "actual" and, for a batch of more than one row, "row"',
        )


def parse_feedback(
    payload: dict[str, Any], class_names: Sequence[str], receipts: Receipts
) -> list[tuple[str, str, str]]:
    """``{"feedback": [{"receipt", "row", "actual"}, ...]}`` to (version, predicted, actual) triples, each row
    recorded as spent (app/receipts.py): the version and the predicted class are the receipt's, the actual class
    must be the loaded model's. All items are counted or none is.
    """
    items = require_keys(payload, "feedback")
    if not isinstance(items, list):
        raise InvalidInput("not_a_list", '"feedback" must be a list of items')
    if not items:
        raise InvalidInput("empty_batch", '"feedback" must hold at least one item')
    if len(items) > MAX_ROWS:
        raise InvalidInput("batch_too_large", f'"feedback" may hold at most {MAX_ROWS} items')
    known = set(class_names)
    # A batch's items usually share one receipt: check it once, and gather the rows named under it.
    checked: dict[str, tuple[Receipt, list[int]]] = {}
    triples = []
    for i, item in enumerate(items):
        _check_item_fields(i, item)
        text = item[RECEIPT_FIELD]
        found = checked.get(text) if isinstance(text, str) else None
        if found is None:
            try:
                found = checked[text] = (receipts.verify(text), [])
            except ReceiptRefused as exc:
                raise InvalidInput(exc.reason, f"item {i}: {exc.detail}", exc.status) from None
        receipt, named = found
        rows = len(receipt.classes)
        row = item.get("row", 0 if rows == 1 else None)
        if type(row) is not int:
            raise InvalidInput("invalid_feedback_item", f'item {i}: "row" must be the index of a row of the batch')
        if not 0 <= row < rows:
            raise InvalidInput("receipt_mismatch", f"item {i}: the receipt's batch has {rows} row(s)")
        index = int(receipt.classes[row])
        if index >= len(class_names):
            raise InvalidInput("unknown_class", f"item {i}: the receipt names a class this model does not have")
        predicted, actual = class_names[index], item["actual"]
        if not (isinstance(actual, str) and actual in known):
            raise InvalidInput("unknown_class", f"item {i} names a class the model does not have")
        if "predicted" in item and item["predicted"] != predicted:
            raise InvalidInput("receipt_mismatch", f'item {i}: "predicted" is not the class the receipt says')
        if "model_version" in item and item["model_version"] != receipt.version:
            raise InvalidInput("model_version_mismatch", f"item {i}: the receipt is for another model version")
        named.append(row)
        triples.append((receipt.version, predicted, actual))
    try:
        receipts.spend(checked.values())
    except ReceiptRefused as exc:
        raise InvalidInput(exc.reason, exc.detail, exc.status) from None
    return triples
