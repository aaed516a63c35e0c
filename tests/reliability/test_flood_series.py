"""The series `/metrics` exposes are a constant of the code: computed here from the metric declarations, the
Flask URL map and the model's metadata, reached exactly by a warm-up, and unchanged by a flood of random
paths, methods, headers, query strings and bodies sent as raw bytes."""

from __future__ import annotations

import itertools
import json
import random
import socket
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from app import metrics
from app.factory import create_app
from app.model import load
from app.validation import MAX_BODY_BYTES
from harness.exposition import samples
from harness.load import BODY, host_port
from harness.processes import report

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
OTHER_EXAMPLE = "BREW"  # a method token gunicorn accepts and the code files under OTHER
# What a route answers with the model loaded, by how it is declared: a POST route reads a JSON body.
POST_STATUSES = ("200", "400", "413", "415")
# /feedback also refuses a replayed receipt (409) and, when the pod's spent set is full, any (429).
FEEDBACK_STATUSES = (*POST_STATUSES, "409", "429")
GET_STATUSES = ("200",)
# The test's server holds 8 pages of spent receipts (the floor, app/spent.py): the warm-up fills them.
SPENT_MAX_MB = "0.03"
# Requests that match no rule: not found, method not allowed (OPTIONS is answered for every rule), and
# werkzeug's 400 for a Host header it cannot route on ("a..b").
UNMATCHED_STATUSES = ("400", "404", "405")


def http_label_sets(routes: dict[str, set[str]]) -> set[tuple[str, str, str]]:
    """Every (method, route, status) the service can record: bounded by methods x URL rules x statuses."""
    methods = sorted(metrics.KNOWN_METHODS | {metrics.OTHER_METHOD})
    found = set()
    for rule, allowed in routes.items():
        for method in allowed:
            statuses = GET_STATUSES
            if method == "POST":
                statuses = FEEDBACK_STATUSES if rule == "/feedback" else POST_STATUSES
            found.update((method, rule, status) for status in statuses)
    for method in methods:
        for status in UNMATCHED_STATUSES:
            if not (status == "405" and method == "OPTIONS"):
                found.add((method, metrics.UNMATCHED_ROUTE, status))
    return found


def expected_series(model_dir: Path) -> set[SampleKey]:
    """Every sample the code can expose with this model, from the declarations alone."""
    model = load(model_dir)
    routes = {r.rule: set(r.methods) for r in create_app(model_dir, instrumented=False).url_map.iter_rules()}
    http = http_label_sets(routes)
    version, name = model.version, model.metadata["name"]
    classes = model.class_names
    features = [(f["name"], len(f["bin_ratios"])) for f in model.metadata["reference"]["features"]]
    # The label values each label set can take; a new label set must be added here (and so be bounded).
    domains: dict[tuple[str, ...], list[tuple[str, ...]]] = {
        (): [()],
        ("method", "route", "status"): sorted(http),
        ("method", "route"): sorted({(m, r) for m, r, _ in http}),
        ("reason",): [(r,) for r in metrics.INVALID_REASONS],
        ("feature", "bin"): [(f, str(b)) for f, bins in features for b in range(bins)],
        ("predicted_class",): [(c,) for c in classes],
        ("model_version",): [(version,)],
        ("model_version", "predicted_class"): [(version, c) for c in classes],
        ("model_version", "predicted_class", "actual_class"): [
            (version, p, a) for p, a in itertools.product(classes, classes)
        ],
        ("model_name", "model_version"): [(name, version)],
    }
    # Metrics whose labels share a name with another's but not its values.
    by_metric: dict[str, list[tuple[str, ...]]] = {
        metrics.HTTP_CONNECTIONS_CLOSED_TOTAL: [(r,) for r in metrics.CONNECTION_CLOSE_REASONS],
    }
    declared = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    expected: set[SampleKey] = set()
    for metric in declared:
        # prometheus_client keeps the declaration in these attributes (pinned 0.26).
        labelnames, kind = tuple(metric._labelnames), metric._type
        assert labelnames in domains, f"{metric._name}: labels {labelnames} have no known bounded domain"
        if kind == "gauge":
            # "all"/"liveall" gauges carry a pid label: one more series per worker ever started.
            assert metric._multiprocess_mode in {"livesum", "max", "min", "sum", "mostrecent", "livemostrecent"}
        for values in by_metric.get(f"{metric._name}_total", domains[labelnames]):
            labels = tuple(zip(labelnames, values, strict=True))
            if kind == "counter":
                expected.add((f"{metric._name}_total", tuple(sorted(labels))))
            elif kind == "gauge":
                expected.add((metric._name, tuple(sorted(labels))))
            elif kind == "histogram":
                for bound in metric._upper_bounds:
                    expected.add((f"{metric._name}_bucket", tuple(sorted((*labels, ("le", floatToGoString(bound)))))))
                expected.update((f"{metric._name}_{s}", tuple(sorted(labels))) for s in ("count", "sum"))
            else:
                pytest.fail(f"{metric._name}: no rule for a {kind}")
    # The master's own counters, served beside the workers' (app/metrics.py, MasterCounter).
    for master in (m for m in vars(metrics).values() if isinstance(m, metrics.MasterCounter)):
        for family in master.collect():
            expected.update((s.name, tuple(sorted(s.labels.items()))) for s in family.samples)
    return expected


# ---- raw requests ----------------------------------------------------------------------------------------------


def raw(app: str, request: bytes) -> int | None:
    """Send bytes as they are; the status of the answer, or None if the server closed without one."""
    with socket.create_connection(host_port(app), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/"):
        return None
    return int(data.split(b" ", 2)[1])


def build(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    fields = {"Host": "svc", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


def _feedback(app: str) -> bytes:
    """A feedback body for a prediction just made."""
    receipt = requests.post(f"{app}/predict", data=BODY, headers={"Content-Type": "application/json"}, timeout=10)
    return json.dumps({"feedback": [{"receipt": receipt.json()["receipt"], "actual": "class_0"}]}).encode()


def _fill_spent_set(app: str) -> None:
    """Feedback until the server's spent set is full (the server holds only a few pages of it)."""
    for _ in range(20000):
        status = requests.post(
            f"{app}/feedback", data=_feedback(app), headers={"Content-Type": "application/json"}, timeout=10
        ).status_code
        if status == 429:
            return
        assert status == 200, status
    pytest.fail("the spent set never filled")


def warm_up(model_dir: Path, app: str) -> Iterator[tuple[bytes, int]]:
    """One request per (method, route, status) the code can record, with the status it must get."""
    json_ct = {"Content-Type": "application/json"}
    good = {"/predict": BODY, "/feedback": _feedback(app)}
    routes = {r.rule: set(r.methods) for r in create_app(model_dir, instrumented=False).url_map.iter_rules()}
    for method, rule, status in sorted(http_label_sets(routes)):
        verb = OTHER_EXAMPLE if method == metrics.OTHER_METHOD else method
        if rule != metrics.UNMATCHED_ROUTE and method == "POST":
            if status == "429":
                _fill_spent_set(app)  # answered 429 once it is full: that is the series
                continue
            body, headers = {
                "200": (good[rule], json_ct),
                "400": (b"{", json_ct),
                "409": (good[rule], json_ct),  # after the 200: the same receipt again
                "413": (b" " * (MAX_BODY_BYTES + 1), json_ct),
                "415": (good[rule], {"Content-Type": "text/plain"}),
            }[status]
            yield build(verb, rule, body, headers), int(status)
        elif rule != metrics.UNMATCHED_ROUTE:
            yield build(verb, rule), int(status)
        elif status == "404":
            yield build(verb, "/no/such/thing"), 404
        elif status == "405":
            wrong = "/predict" if method in {"GET", "HEAD"} else "/healthz"
            yield build(verb, wrong), 405
        else:
            yield build(verb, "/healthz", headers={"Host": "a..b"}), 400


def flood(rng: random.Random, model_dir: Path) -> Iterator[bytes]:
    """Random requests: paths near and far from the real ones, methods valid and not, any header."""
    rules = ["/predict", "/feedback", "/healthz", "/readyz", "/model", "/metrics", "/static/x"]
    alphabet = string.ascii_letters + string.digits + "/-_.~%!$&'()*+,;=:@"
    methods = [*metrics.KNOWN_METHODS, "BREW", "PROPFIND", "MKCOL", "TRACE", "CONNECT", "get", "X-Y", "A" * 30]
    while True:
        kind = rng.random()
        if kind < 0.3:
            path = rng.choice(rules) + rng.choice(
                ["", "/", "//", "/..", "/%2e%2e", "/" + str(rng.random()), ";x", "%00"]
            )
        elif kind < 0.4:
            path = "/" * rng.randint(1, 3) + rng.choice(rules).lstrip("/")
        elif kind < 0.5:
            path = "/" + "".join(f"%{rng.randrange(256):02x}" for _ in range(rng.randint(1, 30)))
        elif kind < 0.55:
            path = "/" + "a" * rng.randint(3000, 5000)  # beyond gunicorn's request-line limit too
        else:
            path = "/" + "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        if rng.random() < 0.5:
            path += "?" + "&".join(
                f"{''.join(rng.choices(alphabet, k=rng.randint(0, 8)))}={''.join(rng.choices(alphabet, k=5))}"
                for _ in range(rng.randint(1, 5))
            )
        headers = {
            "".join(rng.choices(string.ascii_letters + "-", k=rng.randint(1, 20))): "".join(
                rng.choices(string.printable.strip(), k=rng.randint(0, 40))
            )
            for _ in range(rng.randint(0, 6))
        }
        if rng.random() < 0.3:
            headers["Host"] = rng.choice(
                ["a..b", "", "x" * 300, "[::1", "evil.example:99999", "☃.com".encode().decode("latin-1")]
            )
        if rng.random() < 0.3:
            headers["Content-Type"] = rng.choice(
                ["application/json", "text/plain", "application/json; charset=x", "*/*"]
            )
        for name in ("X-Forwarded-For", "X-Forwarded-Host", "X-HTTP-Method-Override", "Accept", "Cookie"):
            if rng.random() < 0.1:
                headers[name] = "".join(rng.choices(alphabet, k=rng.randint(1, 30)))
        body = rng.choice([b"", b"{}", BODY, bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))])
        yield build(rng.choice(methods), path, body, {k: v for k, v in headers.items() if k != "Content-Length"})


def test_the_series_are_a_constant_of_the_code_reached_by_warm_up_and_kept_under_a_flood(server_factory, model_dir):
    server = server_factory(FEEDBACK_SPENT_MAX_MB=SPENT_MAX_MB)
    expected = expected_series(model_dir)
    assert set(samples(server.scrape())) <= expected, "the fresh server exposes a series the code cannot"

    for request, status in warm_up(model_dir, server.app):
        assert raw(server.app, request) == status, request[:120]
    after_warm_up = set(samples(server.scrape()))
    assert after_warm_up == expected, {
        "missing": sorted(expected - after_warm_up)[:10],
        "unexpected": sorted(after_warm_up - expected)[:10],
    }

    rng = random.Random(20261126)
    answered: Counter = Counter()
    for request in itertools.islice(flood(rng, model_dir), 1500):
        answered[raw(server.app, request)] += 1
    after_flood = set(samples(server.scrape()))
    report("flood", series=len(expected), requests=sum(answered.values()), statuses=dict(sorted(answered.items(),
           key=str)))  # fmt: skip
    assert not [s for s in answered if s is not None and s >= 500], answered
    assert after_flood == expected, {"unexpected": sorted(after_flood - expected)[:10]}
    assert len(answered) >= 5, f"the flood should reach many kinds of answer: {answered}"
