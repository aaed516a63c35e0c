"""A JSON object with the same key twice is refused (`duplicate_key`), at any depth, however the body is written;
a body without one decodes to what it always did. Checked against json.loads with an object_pairs_hook, the
careful reading the fast path must agree with."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.validation import InvalidInput, decode_json_object

KEYS = st.text(max_size=4) | st.sampled_from(["instances", "a", ":", "a:b", '"', "\\", "é"])
# Within 64 bits: beyond, orjson decodes to the nearest float by design (app/validation.py).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | KEYS
)
# Objects as lists of pairs, so that a key may repeat: the JSON text is written by hand below.
TREES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4).map(lambda v: ("list", v))
        | st.lists(st.tuples(KEYS, children), max_size=4).map(lambda v: ("object", v))
    ),
    max_leaves=20,
)


ESCAPED_COLON = b"\\u003a"


def _text(tree, escape: bool) -> str:
    if isinstance(tree, tuple) and tree[0] == "list":
        return "[" + ",".join(_text(v, escape) for v in tree[1]) + "]"
    if isinstance(tree, tuple) and tree[0] == "object":
        return "{" + ",".join(f"{_key(k, escape)}:{_text(v, escape)}" for k, v in tree[1]) + "}"
    return json.dumps(tree, ensure_ascii=escape)


def _key(key: str, escape: bool) -> str:
    # Sometimes a colon written by its code, the one way a colon hides from a byte count.
    return json.dumps(key, ensure_ascii=escape).replace(":", "\\u003a" if escape else ":")


def _has_duplicate(tree) -> bool:
    if isinstance(tree, tuple) and tree[0] == "list":
        return any(map(_has_duplicate, tree[1]))
    if isinstance(tree, tuple) and tree[0] == "object":
        keys = [k for k, _ in tree[1]]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in tree[1])
    return False


def _decode(body: bytes):
    try:
        return decode_json_object(body, "application/json")
    except InvalidInput as refused:
        return refused.reason


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEYS, TREES), max_size=4), st.booleans())
def test_a_duplicate_key_anywhere_is_refused_and_nothing_else_changes(pairs, escape):
    tree = ("object", pairs)
    body = _text(tree, escape).encode()
    got = _decode(body)
    event(f"duplicate: {_has_duplicate(tree)}, colon escaped: {ESCAPED_COLON in body}")
    if _has_duplicate(tree):
        assert got == "duplicate_key", body
    else:
        assert got == json.loads(body), body


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": "x", "instances": [[1, 2]]}',
        b'{"instances": [{"a": 1, "a": 2}]}',
        b'{"instances": [[1], {"x": {"y": 1, "y": 1}}]}',
        b'{"a\\u003a": 1, "a\\u003a": 2}',
        b'{"a": NaN, "a": 1}',  # the path for what orjson refuses checks duplicates too
        b'{"a": 1, "b": {"c": 1, "c": 2}, "d": "::::::"}',
    ],
)
def test_the_example_bodies_are_refused(body):
    assert _decode(body) == "duplicate_key" or (body.startswith(b'{"a": NaN') and _decode(body) == "non_finite")


def test_colons_in_strings_are_not_taken_for_keys():
    body = json.dumps({"instances": [["a:b", ":"]], "x": "::"}).encode()
    assert _decode(body) == json.loads(body)
