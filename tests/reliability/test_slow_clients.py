"""Clients that stall mid-request cannot occupy a worker thread (app/worker.py), with THE gunicorn command.

Each attack keeps 2 x (workers x threads) connections stalled for `SLOW_CLIENT_SECONDS` (default 20; the
pod's liveness budget is a whole minute: `SLOW_CLIENT_SECONDS=60` runs that), reopening each one the server
closes, while probes and predictions are timed. Every stalled connection must be closed by the server within
10 s and counted once, with its reason, in `http_connections_closed_total` scraped from the metrics port.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import time
from dataclasses import dataclass, field

import pytest
import requests

from app.metrics import CONNECTION_CLOSE_REASONS
from harness.load import BODY, ROW, host_port

WORKERS = 2  # THE config: app/gunicorn.conf.py
# Twice the threads of two 4-thread gthread workers: what starved the liveness probe of stock gthread, and 8x
# what THE config's one thread per worker would need.
STALLED = 16
SECONDS = float(os.environ.get("SLOW_CLIENT_SECONDS", "20"))
PROBE_TIMEOUT = 2.0  # the Deployment's liveness and readiness timeoutSeconds
CLOSE_WITHIN = 10.0
JSON = {"Content-Type": "application/json"}

HEAD = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
STALLS = {
    # Headers whole, Content-Length 1000, one byte of body, then nothing.
    "body_timeout": HEAD + b"Content-Length: 1000\r\n\r\n{",
    # Half a header line, then nothing.
    "header_timeout": HEAD + b"Content-Len",
}


def closed_counts(text: str) -> dict[str, float]:
    found = dict(re.findall(r'^http_connections_closed_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE))
    assert set(found) == set(CONNECTION_CLOSE_REASONS), found  # every reason exported, even at 0
    return {reason: float(value) for reason, value in found.items()}


@dataclass
class Stalls:
    """Keeps `count` connections stalled with `payload`, reopening each one the server closes."""

    address: tuple[str, int]
    payload: bytes
    count: int
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    opened: int = 0
    lifetimes: list[float] = field(default_factory=list)

    def open(self) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(self.payload)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, time.monotonic())
        self.opened += 1

    def fill(self) -> None:
        while len(self.selector.get_map()) < self.count:
            self.open()

    def reap(self, timeout: float = 0.0) -> None:
        """Record every connection the server has closed (readable, then EOF or reset)."""
        for key, _ in self.selector.select(timeout):
            try:
                data = key.fileobj.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            assert not data, f"a stalled connection got an answer: {data[:80]!r}"
            self.selector.unregister(key.fileobj)
            key.fileobj.close()
            self.lifetimes.append(time.monotonic() - key.data)

    def drain(self, within: float) -> None:
        deadline = time.monotonic() + within
        while self.selector.get_map() and time.monotonic() < deadline:
            self.reap(0.2)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
            self.lifetimes.append(float("inf"))


def timed_get(session: requests.Session, url: str) -> tuple[int, float]:
    start = time.monotonic()
    try:
        status = session.get(url, timeout=PROBE_TIMEOUT).status_code
    except requests.RequestException:
        status = 0
    return status, time.monotonic() - start


@pytest.mark.parametrize("reason", sorted(STALLS))
def test_stalled_clients_hold_no_thread_and_are_closed_and_counted(server, reason):
    before = closed_counts(server.scrape())
    stalls = Stalls(host_port(server.app), STALLS[reason], STALLED)
    stalls.fill()
    probes: list[tuple[str, int, float]] = []
    predictions: list[int] = []
    # Fresh connections for the probes, as the kubelet makes; /predict on one kept-alive session.
    predict = requests.Session()
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        for path in ("/healthz", "/readyz"):
            probes.append((path, *timed_get(requests.Session(), server.app + path)))
        try:
            predictions.append(predict.post(server.app + "/predict", data=BODY, headers=JSON, timeout=5).status_code)
        except requests.RequestException:
            predictions.append(0)
        stalls.reap(1.0)
        stalls.fill()
    stalls.drain(CLOSE_WITHIN + 2)
    time.sleep(1.5)  # counters are written at once, but the last close may trail the last reap
    after = closed_counts(server.scrape())

    slowest = max(t for _, _, t in probes)
    print(
        f"\n[figure] {reason}: {SECONDS:.0f} s with {STALLED} stalled connections: {len(probes)} probes, "
        f"slowest {slowest * 1000:.0f} ms; {len(predictions)} /predict; {stalls.opened} stalled connections, "
        f"closed after {min(stalls.lifetimes):.1f}-{max(stalls.lifetimes):.1f} s; /proc/loadavg {_loadavg()}"
    )
    failed = [(p, s, round(t, 2)) for p, s, t in probes if s != 200 or t > PROBE_TIMEOUT]
    assert not failed, failed
    assert predictions.count(200) == len(predictions), predictions
    assert len(predictions) >= SECONDS / 2
    assert max(stalls.lifetimes) <= CLOSE_WITHIN, sorted(stalls.lifetimes)[-5:]
    # Every stalled connection the test opened was closed by the server, and counted once, with this reason.
    delta = {r: after[r] - before[r] for r in CONNECTION_CLOSE_REASONS}
    assert delta == {r: (stalls.opened if r == reason else 0) for r in CONNECTION_CLOSE_REASONS}


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _exchange(sock: socket.socket, data: bytes, answers: int = 1, timeout: float = 10) -> list[bytes]:
    """Send `data`, read until `answers` whole responses (each with Content-Length) came back."""
    sock.settimeout(timeout)
    sock.sendall(data)
    got, out = b"", []
    while len(out) < answers:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(out)} answers: {got[:200]!r}"
        got += chunk
        while True:
            head_end = got.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = got[:head_end]
            if head.startswith(b"HTTP/1.1 100"):
                got = got[head_end + 4 :]
                continue
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            if len(got) < head_end + 4 + length:
                break
            out.append(got[: head_end + 4 + length])
            got = got[head_end + 4 + length :]
    return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return HEAD + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_a_slow_but_steady_client_is_served(server_factory):
    # A byte every 100 ms: 43 bytes of body take 4.3 s, inside the body deadline of the server below (8 s;
    # THE config's 5 s would leave too thin a margin on a loaded test machine). Progress does not extend it.
    server = server_factory(REQUEST_BODY_TIMEOUT="8")
    body = b'{"instances":[[' + b",".join([b"1"] * 13) + b"]]}"
    before = closed_counts(server.scrape())
    with socket.create_connection(host_port(server.app)) as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
        for byte in body[:-1]:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
        assert _status(_exchange(sock, body[-1:])[0]) == 200
    assert closed_counts(server.scrape()) == before


def test_a_client_trickling_past_the_deadline_is_closed(server_factory):
    server = server_factory(REQUEST_BODY_TIMEOUT="1")
    before = closed_counts(server.scrape())
    with socket.create_connection(host_port(server.app)) as sock:
        sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n")
        start = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(100):  # 10 s of trickle; the server closes after 1 s (a send then fails)
                sock.sendall(b" ")
                time.sleep(0.1)
        assert time.monotonic() - start < 5
    time.sleep(0.5)
    after = closed_counts(server.scrape())
    assert after["body_timeout"] - before["body_timeout"] == 1


def test_keep_alive_pipelining_chunked_and_expect_continue_still_work(server):
    with socket.create_connection(host_port(server.app)) as sock:
        # Two requests in one write, then one split across writes on the same connection.
        two = _exchange(sock, _post(BODY) + b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", answers=2)
        assert [_status(a) for a in two] == [200, 200]
        request = _post(BODY)
        sock.sendall(request[:30])
        time.sleep(0.3)
        sock.sendall(request[30:-5])
        time.sleep(0.3)
        assert _status(_exchange(sock, request[-5:])[0]) == 200
        # A whole request followed by half of the next: the first is answered at once, the second when whole.
        first, second = _post(BODY), _post(BODY)
        assert _status(_exchange(sock, first + second[:40])[0]) == 200
        assert _status(_exchange(sock, second[40:])[0]) == 200
        # Chunked, in pieces, with a trailer.
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(BODY[i : i + 7]), BODY[i : i + 7]) for i in range(0, len(BODY), 7))
        head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head + chunked[:25])
        time.sleep(0.3)
        assert _status(_exchange(sock, chunked[25:] + b"0\r\nX-Trailer: 1\r\n\r\n")[0]) == 200

    # Expect: 100-continue: the interim answer comes before the body is sent, then the real one.
    with socket.create_connection(host_port(server.app)) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.sendall(HEAD + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        answer = _exchange(sock, BODY)[0]
        assert _status(answer) == 200
        assert b"100 Continue" not in answer  # only one interim answer


def test_a_long_pipeline_in_one_write_is_answered_in_order(server):
    # Every request past the first is already whole in the poller's buffer when the one before it ends: with one
    # thread the poller serves them one after another (a loop; once it recursed, and a long pipeline hit Python's
    # recursion limit and the connection was dropped unanswered).
    count = 1500
    requests_ = b"".join(b"GET /healthz?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(count))
    with socket.create_connection(host_port(server.app)) as sock:
        answers = _exchange(sock, requests_, answers=count, timeout=30)
    assert [_status(a) for a in answers] == [200] * count
    assert requests.get(server.app + "/healthz", timeout=PROBE_TIMEOUT).ok


def test_headers_beyond_any_valid_request_are_closed_and_counted(server):
    before = closed_counts(server.scrape())
    with socket.create_connection(host_port(server.app)) as sock:
        sock.settimeout(10)
        line = b"X-Padding: " + b"a" * 8000 + b"\r\n"
        with pytest.raises(OSError):
            for _ in range(100):  # 800 kB of header lines, no end: closed past the header bound
                sock.sendall(line)
            assert sock.recv(100) == b""
            raise ConnectionResetError
    time.sleep(0.5)
    after = closed_counts(server.scrape())
    assert after["too_large"] - before["too_large"] == 1


def test_past_the_buffer_budget_bodies_wait_their_turn_and_small_requests_pass(server_factory):
    # One worker, so that every connection shares its budget: 2000 bytes, less than one of these bodies. What can
    # go wrong is a deadlock (a paused body never read again): each request here must still be served.
    server = server_factory(workers=1, WORKER_BUFFER_BUDGET_BYTES="2000")
    body = b'{"instances": [' + b",".join([json.dumps(ROW).encode()] * 40) + b"]}"
    assert len(body) > 2500
    first, second = (socket.create_connection(host_port(server.app), timeout=10) for _ in range(2))
    with first, second:
        first.sendall(_post(body)[:-200])
        time.sleep(0.3)
        # The first holds most of the budget: the second is read until the worker notices, then waits.
        second.sendall(_post(body)[:-200])
        time.sleep(0.3)
        # A request that arrives whole is never held back.
        assert requests.get(server.app + "/healthz", timeout=PROBE_TIMEOUT).ok
        assert _status(_exchange(first, _post(body)[-200:])[0]) == 200
        # The first is gone from the buffers: the second is read again and served.
        assert _status(_exchange(second, _post(body)[-200:])[0]) == 200


def test_a_client_that_does_not_read_its_answers_holds_a_thread_for_the_deadline_at_most(server_factory):
    # Pipelined 256-row requests, answers never read: once the socket buffers are full the thread's send blocks,
    # until the kernel's send timeout (REQUEST_BODY_TIMEOUT, 1 s here) frees it and the connection is closed.
    server = server_factory(REQUEST_BODY_TIMEOUT="1")
    before = closed_counts(server.scrape())
    big = _post(json.dumps({"instances": [ROW] * 256}).encode())
    sock = socket.create_connection(host_port(server.app))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Longer than the server's 1 s: the client stops only once the server has closed (a send then fails). With a
    # shorter one, a pause of the server's could end the sending early, and the answers to what was buffered
    # could all fit in the socket buffers: then nothing blocks and the test measures nothing.
    sock.settimeout(5.0)
    try:
        with pytest.raises(OSError):  # about 10 KB answered per request: far more than any socket buffer holds
            for _ in range(4000):
                sock.sendall(big)
        deadline = time.monotonic() + 10
        while closed_counts(server.scrape())["read_timeout"] == before["read_timeout"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert closed_counts(server.scrape())["read_timeout"] - before["read_timeout"] == 1
        assert requests.get(server.app + "/healthz", timeout=PROBE_TIMEOUT).ok
    finally:
        sock.close()
