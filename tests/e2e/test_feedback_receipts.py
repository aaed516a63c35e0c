"""Feedback under THE gunicorn command with 2 workers: a prediction's feedback counts once on the pod, whichever
worker takes it and even after the worker that counted it is killed; a receipt of another key, an altered one
and a malformed one are refused with a 4xx, logged without a traceback, and move nothing."""

from __future__ import annotations

import http.client
import json
import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.metrics import INVALID_REASONS
from harness.exposition import samples, total
from harness.load import ROW, host_port
from harness.processes import live_workers, wait_until


class Connection:
    """One kept-alive connection, and the worker process that accepted it."""

    def __init__(self, server) -> None:
        self.http = http.client.HTTPConnection(*host_port(server.app), timeout=10)
        self.http.connect()
        self.post("/model", None, method="GET")  # the worker has accepted it once it answered
        port = self.http.sock.getsockname()[1]
        self.worker = next(
            pid
            for pid in live_workers(server.process.pid)
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp"))
        )

    def post(self, path: str, body: object, method: str = "POST") -> tuple[int, dict]:
        data = None if body is None else json.dumps(body)
        self.http.request(method, path, data, {"Content-Type": "application/json"})
        response = self.http.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.http.close()


def connections_on_both_workers(server) -> tuple[Connection, Connection]:
    """A connection to each of the two workers (which one accepts a connection is up to the kernel)."""
    found: dict[int, Connection] = {}
    for _ in range(200):
        connection = Connection(server)
        if connection.worker in found:
            connection.close()
        else:
            found[connection.worker] = connection
        if len(found) == 2:
            return tuple(found.values())  # type: ignore[return-value]
    pytest.fail("200 connections all went to one worker")


def feedback_cells(server) -> float:
    return total(server.scrape(), "model_feedback_total")


def settled(server, expected: float) -> None:
    wait_until(lambda: feedback_cells(server) == expected, timeout=5, what="feedback counted")


def test_a_replay_on_the_other_worker_and_after_a_worker_restart_is_refused(server):
    one, two = connections_on_both_workers(server)
    assert one.worker != two.worker
    status, answer = one.post("/predict", {"instances": [ROW, ROW]})
    assert status == 200
    before = feedback_cells(server)
    item = {"receipt": answer["receipt"], "row": 1, "actual": "class_0"}
    assert one.post("/feedback", {"feedback": [item]}) == (
        200,
        {"accepted": 1, "model_version": answer["model_version"]},
    )
    status, refusal = two.post("/feedback", {"feedback": [item]})
    assert (status, refusal["error"]) == (409, "receipt_replayed")
    # The other row of the same receipt is still taken, by the other worker.
    assert two.post("/feedback", {"feedback": [{**item, "row": 0}]})[0] == 200
    settled(server, before + 2)

    # The worker that counted it dies; its replacement refuses the replay too (the set is in a file, not in it).
    counted_by = one.worker
    one.close()
    os.kill(counted_by, signal.SIGKILL)
    wait_until(
        lambda: len(live_workers(server.process.pid)) == 2 and counted_by not in live_workers(server.process.pid),
        timeout=30,
        what="a replacement worker",
    )
    for _ in range(6):
        connection = Connection(server)
        status, refusal = connection.post("/feedback", {"feedback": [item]})
        assert (status, refusal["error"]) == (409, "receipt_replayed")
        connection.close()
    two.close()
    settled(server, before + 2)


def test_the_same_feedback_sent_at_once_over_many_connections_counts_once(server):
    connection = Connection(server)
    status, answer = connection.post("/predict", {"instances": [ROW]})
    connection.close()
    assert status == 200
    before = feedback_cells(server)
    body = {"feedback": [{"receipt": answer["receipt"], "actual": "class_1"}]}

    def send(_):
        each = Connection(server)
        try:
            return each.worker, each.post("/feedback", body)[0]
        finally:
            each.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(32)))
    statuses = sorted(status for _, status in results)
    assert statuses == [200] + [409] * 31, statuses
    assert len({worker for worker, _ in results}) == 2  # both workers were asked
    settled(server, before + 1)


@pytest.mark.parametrize(
    "receipt",
    ["é" * 70, "\udcff" * 3, "A" * 5000, "", 7, None, ["x"], {"a": 1}, "AAAA", "=" * 70, "-_" * 40],
    ids=["non-ascii", "surrogates", "long", "empty", "int", "null", "list", "object", "short", "padding", "alphabet"],
)
def test_a_malformed_receipt_is_a_4xx_without_a_traceback(server, receipt):
    connection = Connection(server)
    # A first refusal creates the (route, 400) request series: the refusals under test may add none.
    assert connection.post("/feedback", {"feedback": [{"receipt": "x", "actual": "class_0"}]})[0] == 400
    before_series, before = set(samples(server.scrape())), feedback_cells(server)
    # json.dumps writes a lone surrogate as an escape: the server decodes it to a str that is not valid text.
    status, refusal = connection.post("/feedback", {"feedback": [{"receipt": receipt, "actual": "class_0"}]})
    connection.close()
    assert 400 <= status < 500 and refusal["error"] in {"invalid_receipt", "receipt_other_key"}, refusal
    assert "Traceback" not in server.log.read_text()
    after = server.scrape()
    assert total(after, "model_feedback_total") == before
    assert set(samples(after)) == before_series


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
STATUS = {"receipt_replayed": 409, "feedback_store_full": 429}
OUTCOMES: Counter = Counter()
CLASSES = ("class_0", "class_1", "class_2")


@settings(max_examples=150, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_feedback_body_gets_a_5xx_or_moves_a_counter_it_should_not(server, data):
    """Against THE gunicorn command: bodies built from real receipts (fresh, spent, altered) and any JSON value."""
    connection = Connection(server)
    try:
        status, answer = connection.post("/predict", {"instances": [ROW] * data.draw(st.sampled_from([1, 1, 1, 3]))})
        assert status == 200
        receipt = answer["receipt"]
        i = data.draw(st.integers(0, 10**6)) % len(receipt)
        choices = [receipt, receipt[:i] + data.draw(st.characters()) + receipt[i + 1 :], receipt[:i]]

        def sometimes(odds: int) -> bool:
            return data.draw(st.sampled_from([False] * (odds - 1) + [True]))

        items = []
        for _ in range(data.draw(st.integers(1, 3))):
            # Mostly well formed, so that bodies reach the receipt's checks and some are taken.
            item = {
                "receipt": choices[data.draw(st.sampled_from([0] * 8 + [1, 2]))],
                "actual": data.draw(JSON_SCALARS) if sometimes(8) else data.draw(st.sampled_from(CLASSES)),
            }
            if sometimes(2):
                item["row"] = data.draw(JSON_SCALARS) if sometimes(8) else data.draw(st.integers(-1, 3))
            if sometimes(8):
                item[data.draw(st.sampled_from(["predicted", "model_version", "other"]))] = data.draw(JSON_SCALARS)
            items.append(item)
        body = {"feedback": items}
        before_series, before = set(samples(server.scrape())), feedback_cells(server)
        status, answer = connection.post("/feedback", body)
        assert status < 500, answer
        OUTCOMES[answer.get("error", "accepted")] += 1
        if status == 200:
            assert answer["accepted"] == len(items)
            settled(server, before + len(items))
            # A replay of the same body, to any worker, moves nothing.
            assert connection.post("/feedback", body)[0] == 409
            OUTCOMES["receipt_replayed"] += 1
        else:
            assert answer["error"] in INVALID_REASONS and status == STATUS.get(answer["error"], 400), answer
        after = server.scrape()
        assert total(after, "model_feedback_total") == before + (len(items) if status == 200 else 0)
        # The model's series (the request series, by route and status, are the flood tests' subject).
        assert {k for k in samples(after) if k[0].startswith("model_")} == {
            k for k in before_series if k[0].startswith("model_")
        }
    finally:
        connection.close()
    assert "Traceback" not in server.log.read_text()


def test_the_generated_bodies_were_taken_and_refused(server):
    # Runs after the property above (file order): it must have reached both outcomes to prove anything.
    print(f"\nfeedback bodies against gunicorn: {dict(OUTCOMES)}")
    assert OUTCOMES["accepted"] >= 10 and {"invalid_receipt", "receipt_replayed"} <= set(OUTCOMES), OUTCOMES
