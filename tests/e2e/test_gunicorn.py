"""THE gunicorn command with several workers: exact counts across workers, a master that answers scrapes
while the workers are busy, refusals that keep the server serving, and a bounded set of series."""

from __future__ import annotations

import json
import os
import random
import signal
import string
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from app.metrics import KNOWN_METHODS
from harness.exposition import samples, total
from harness.load import ROW


def predict(base: str, body, content_type: str = "application/json") -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{base}/predict", data=data, headers={"Content-Type": content_type}, timeout=10)


def test_requests_spread_over_workers_are_counted_exactly_once(server):
    before = total(server.scrape(), "http_requests_total", route="/predict", status="200")
    n = 300
    pids = set()
    with ThreadPoolExecutor(8) as pool:
        # Fresh connections so the requests land on every worker, not one keep-alive socket.
        for response in pool.map(lambda _: predict(server.app, {"instances": [ROW]}), range(n)):
            assert response.status_code == 200
    for pid_file in server.multiproc.glob("counter_*.db"):
        pids.add(pid_file.stem.split("_")[1])
    after = total(server.scrape(), "http_requests_total", route="/predict", status="200")
    assert after - before == n
    assert len(pids) >= 3, "the workers and the master should each have written counters"


def test_metrics_are_not_served_on_the_app_port(server):
    response = requests.get(f"{server.app}/metrics", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def _worker_pids(server) -> list[int]:
    pid = server.process.pid
    return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def test_scrape_answers_while_every_worker_is_busy(server):
    # No client can hold a worker's threads any more (app/worker.py reads requests in its poller): a worker that
    # cannot run at all, stopped with SIGSTOP, is the busiest worker there is.
    workers = _worker_pids(server)
    assert len(workers) == 2
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        server.scrape()
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"a scrape took {elapsed:.3f}s while the workers were busy"
        # The app port itself is stalled: a request there waits.
        try:
            requests.get(f"{server.app}/healthz", timeout=0.5)
            app_blocked = False
        except requests.Timeout:
            app_blocked = True
        assert app_blocked
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    assert requests.get(f"{server.app}/healthz", timeout=5).ok


BAD = [
    (b"{not json", "application/json", 400, "invalid_json"),
    (json.dumps([ROW]).encode(), "application/json", 400, "not_an_object"),
    (json.dumps({"instances": [ROW], "x": 1}).encode(), "application/json", 400, "unexpected_key"),
    (json.dumps({"instances": [ROW[:3]]}).encode(), "application/json", 400, "wrong_row_length"),
    (json.dumps({"instances": [["1"] * 13]}).encode(), "application/json", 400, "non_numeric"),
    (b'{"instances": [[NaN' + b",1" * 12 + b"]]}", "application/json", 400, "non_finite"),
    (json.dumps({"instances": []}).encode(), "application/json", 400, "empty_batch"),
    (json.dumps({"instances": [ROW] * 257}).encode(), "application/json", 400, "batch_too_large"),
    (b"x" * (2 * 1024 * 1024), "application/json", 413, "body_too_large"),
    (json.dumps({"instances": [ROW]}).encode(), "text/plain", 415, "unsupported_media_type"),
]


def test_every_bad_input_gets_its_4xx_and_the_server_keeps_serving(server):
    before = server.scrape()
    for body, content_type, status, reason in BAD:
        response = predict(server.app, body, content_type)
        assert response.status_code == status, reason
        assert response.json()["error"] == reason
    assert requests.get(f"{server.app}/nowhere", timeout=5).status_code == 404
    assert requests.put(f"{server.app}/predict", timeout=5).status_code == 405
    after = server.scrape()
    for _body, _ct, _status, reason in BAD:
        counted = total(after, "model_invalid_requests_total", reason=reason)
        assert counted - total(before, "model_invalid_requests_total", reason=reason) >= 1, reason
    assert predict(server.app, {"instances": [ROW]}).status_code == 200
    assert total(after, "http_requests_total", status="500") == 0


def test_exposition_passes_promtool(server):
    predict(server.app, {"instances": [ROW] * 3})
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=server.scrape(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_a_flood_of_random_requests_adds_no_series(server):
    # Every method value the code can record, once on an unmatched path: the whole series set the flood may
    # touch. After that, nothing a client sends may add one.
    for method in [*KNOWN_METHODS, "BREW"]:
        requests.request(method, f"{server.app}/x", timeout=5)
    baseline = set(samples(server.scrape()))
    rng = random.Random(7)
    session = requests.Session()
    for _ in range(500):
        path = "/" + "".join(rng.choices(string.ascii_letters + string.digits + "/-_.", k=rng.randint(1, 40)))
        method = rng.choice([*KNOWN_METHODS, "BREW", "PROPFIND", "X" + str(rng.randint(0, 10**6))])
        query = {"".join(rng.choices(string.ascii_lowercase, k=5)): str(rng.random())}
        session.request(method, server.app + path, params=query, headers={"X-Random": str(rng.random())}, timeout=5)
    assert set(samples(server.scrape())) == baseline


def test_feedback_is_counted_exactly_across_workers_and_refusals_keep_it_bounded(server):
    version = requests.get(f"{server.app}/model", timeout=5).json()["version"]
    answers = [
        requests.post(f"{server.app}/predict", json={"instances": [ROW, ROW]}, timeout=10).json() for _ in range(50)
    ]
    predicted = answers[0]["predictions"][0]  # the same row every time: the same class
    bodies = [
        {"feedback": [{"receipt": a["receipt"], "row": row, "actual": "class_1"} for row in (0, 1)]} for a in answers
    ]
    before = server.scrape()
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(lambda body: requests.post(f"{server.app}/feedback", json=body, timeout=10).status_code, bodies)
        )
    assert statuses == [200] * 50
    item = bodies[0]["feedback"][0]
    receipt = answers[1]["receipt"]
    altered = receipt[:10] + ("B" if receipt[10] != "B" else "C") + receipt[11:]  # a byte of the nonce
    hostile = [
        {"feedback": [{**item, "actual": "class_" + "9" * 50}]},
        {"feedback": [{**item, "model_version": "attacker-chosen"}]},
        {"feedback": [{**item, "predicted": {"nested": ["x"]}}]},
        {"feedback": [{**item, "receipt": altered}]},
        {"feedback": [{"predicted": predicted, "actual": "class_1", "model_version": version}]},
        {"feedback": "x"},
    ]
    for body in hostile:
        response = requests.post(f"{server.app}/feedback", json=body, timeout=10)
        assert response.status_code == 400 and response.json()["error"]
    assert requests.post(f"{server.app}/feedback", json=bodies[7], timeout=10).status_code == 409  # a replay
    after = server.scrape()
    cell = {"predicted_class": predicted, "actual_class": "class_1", "model_version": version}
    assert total(after, "model_feedback_total", **cell) - total(before, "model_feedback_total", **cell) == 100
    versions = {
        dict(labels).get("model_version") for (name, labels) in samples(after) if name == "model_feedback_total"
    }
    assert versions == {version}
    assert len([1 for (name, _labels) in samples(after) if name == "model_feedback_total"]) == 9
