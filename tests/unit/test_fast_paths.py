"""The fast paths give what the slow, value-by-value code they stand in front of gives: the same matrix, the
same refusal, the same histogram."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from app.metrics import CONFIDENCE_BUCKETS
from app.pending import PendingHistogram
from app.validation import InvalidInput, _as_matrix, _only_numbers, _parse_rows, decode_json_object, parse_instances

FEATURES = [f"f{i}" for i in range(4)]
NUMBERS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(10**20), 10**20)
    | st.sampled_from([1e300, -1e300, 10**300, 10**300 + 1, 2**64, 1.0, 0.0, -0.0])
)
# Numbers written as strings too: numpy would read "4" as 4.0 where a float is asked for.
NUMERIC_TEXT = st.from_regex(r"-?[0-9]{1,3}(\.[0-9])?|nan|inf", fullmatch=True)
VALUES = (
    NUMBERS
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
    | NUMERIC_TEXT
    | st.floats()
    | st.lists(NUMBERS, max_size=2)
)
ROWS = st.one_of(
    st.lists(NUMBERS, min_size=4, max_size=4),
    st.lists(NUMBERS | NUMERIC_TEXT, min_size=4, max_size=4),
    st.lists(VALUES, min_size=3, max_size=5),
    st.fixed_dictionaries({f: NUMBERS for f in FEATURES}),
    st.dictionaries(st.sampled_from([*FEATURES, "x"]), VALUES, max_size=5),
    VALUES,
)


def _outcome(parse, instances):
    try:
        return parse(instances, FEATURES)
    except InvalidInput as exc:
        return (exc.reason, exc.detail, exc.status)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(ROWS, min_size=1, max_size=5)
    | st.lists(st.lists(NUMBERS, min_size=4, max_size=4), min_size=1)
    | st.lists(st.lists(NUMBERS | NUMERIC_TEXT, min_size=4, max_size=4), min_size=1, max_size=5)
)
def test_the_vectorised_batch_path_accepts_only_what_the_value_by_value_path_accepts_and_gives_the_same(instances):
    slow = _outcome(_parse_rows, instances)
    # Both ways in: without the body (a per-value type check), and with the JSON text the batch came in.
    for fast in (_as_matrix(instances, FEATURES), _as_matrix(instances, FEATURES, _body(instances))):
        if fast is None:
            continue  # left to _parse_rows, which parse_instances then calls
        assert isinstance(slow, np.ndarray), f"fast path accepted what the slow path refuses: {slow}"
        assert fast.dtype == slow.dtype == np.float64
        np.testing.assert_array_equal(fast, slow)


def _body(instances) -> bytes:
    return json.dumps({"instances": instances}).encode()


PLAIN = ([[1, 2.5, 3, 4]] * 256, [[-(2**63), 2**64 - 1, 1e-300, 0]], [[1, 2, 3, 4]])
REFUSED = ([[1, 2, 3, True]], [[1, 2, 3, False]], [[1, 2, 3, None]], [[1, 2, 3, "4"]], [[1, 2, 3]], [[1, 2, 3, 1e301]])


@pytest.mark.parametrize("with_body", [False, True])
def test_the_vectorised_path_takes_plain_batches(with_body):
    # Else the fast path would be dead code and the property above would hold vacuously.
    def fast(instances):
        return _as_matrix(instances, FEATURES, _body(instances) if with_body else None)

    for plain in PLAIN:
        assert fast(plain) is not None
    assert fast([dict.fromkeys(FEATURES, 1.5)] * 3) is not None
    for refused in REFUSED:
        assert fast(refused) is None


def test_the_one_pass_branch_takes_a_body_of_numbers_only():
    # Taken for the usual body; never for one that holds a literal, a string value or a second key.
    assert _only_numbers(_body(PLAIN[0])) and _only_numbers(b'{"instances": [[1e-05, -2E+3, 0.5, 7]]}')
    assert not any(_only_numbers(_body(refused)) for refused in REFUSED[:4])
    assert not _only_numbers(b'{"instances": [[1, 2, 3, 4]], "id": 7}') and not _only_numbers(b"[[1, 2, 3, 4]]")


def test_a_long_string_among_many_values_is_refused_without_a_matrix_of_strings():
    # numpy would make every value a string as long as the longest: 150 GiB from this body of under 1 MiB.
    instances = [["x" * 400_000, *[1] * 100_000]]
    with pytest.raises(InvalidInput) as refused:
        parse_instances({"instances": instances}, FEATURES, _body(instances))
    assert refused.value.reason == "wrong_row_length"


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(-(10**25), 10**25) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


def _decoded(body: bytes):
    try:
        return ("ok", decode_json_object(body, "application/json"))
    except InvalidInput as exc:
        return (exc.reason, exc.detail, exc.status)


def _as_orjson_reads(value):
    """orjson reads an integer beyond 64 bits as the nearest float, where json.loads makes a Python int."""
    if isinstance(value, dict):
        return {k: _as_orjson_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_orjson_reads(v) for v in value]
    if type(value) is int and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def _reference(body: bytes):
    """What the service did before orjson: json.loads alone (big integers as orjson reads them), refusing an object
    with the same key twice."""

    def reject(name):
        raise InvalidInput("non_finite", f"{name} is not a finite number")

    def unique(pairs):
        if len(dict(pairs)) != len(pairs):
            raise InvalidInput("duplicate_key", "an object in the body has the same key twice")
        return dict(pairs)

    try:
        payload = json.loads(body, parse_constant=reject, object_pairs_hook=unique)
    except InvalidInput as exc:
        return (exc.reason, exc.detail, exc.status)
    except (ValueError, RecursionError):
        return ("invalid_json", "the body is not valid JSON", 400)
    if not isinstance(payload, dict):
        return ("not_an_object", "the body must be a JSON object", 400)
    return ("ok", _as_orjson_reads(payload))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=4), JSON, max_size=3) | JSON)
def test_decoding_gives_what_json_loads_gives(value):
    body = json.dumps(value, allow_nan=True).encode()
    assert repr(_decoded(body)) == repr(_reference(body))  # repr: NaN never equals itself


@pytest.mark.parametrize(
    "body",
    [b'{"a": [1e999]}', b'{"a": NaN}', b'{"a": 1}'.decode().encode("utf-16"), b'{"a": "\\ud800"}', b"[" * 5000,
     b'{"a": 18446744073709551616}', b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b'{"a": 1} x'],
)  # fmt: skip
def test_decoding_edge_cases_as_json_loads(body):
    assert repr(_decoded(body)) == repr(_reference(body))


def _exposed(histogram: Histogram) -> dict[str, float]:
    samples = (s for m in histogram.collect() for s in m.samples if not s.name.endswith("_created"))
    return {f"{s.name}{s.labels.get('le', '')}": s.value for s in samples}


@pytest.mark.parametrize("size", [1, 7, 256])
def test_a_pending_histogram_writes_what_observe_would(size):
    values = np.random.default_rng(size).uniform(0.3, 1.0, size)
    values[: min(size, 3)] = [0.5, 1.0, 0.3][: min(size, 3)]  # on a bound, the last bound, under the first
    one_by_one = Histogram("c", "one by one", buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    pending_child = Histogram("c", "summed", buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry())
    pending = PendingHistogram(pending_child)
    for v in values:
        one_by_one.observe(float(v))
    pending.observe(float(values[0]))
    pending.observe_all(values[1:])
    pending.flush()
    pending.flush()  # a second flush adds nothing
    expected, got = _exposed(one_by_one), _exposed(pending_child)
    assert math.isclose(got.pop("c_sum"), expected.pop("c_sum"), rel_tol=1e-12)
    assert got == expected
