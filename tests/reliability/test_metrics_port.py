"""The master's metrics port under hostile clients, on THE gunicorn command: stalled request heads, a connect
burst, too many connections, an oversized head. A scrape and the liveness probe keep answering within the
probe's 2 s, stalled connections are closed within 10 s and counted, and the master's thread count stays
where it was (app/metrics_server.py)."""

from __future__ import annotations

import os
import selectors
import socket
import time

import pytest
import requests

from app.metrics import METRICS_PORT_CONNECTIONS_CLOSED_TOTAL
from app.metrics_server import HEAD_DEADLINE_SECONDS, MAX_CONNECTIONS, MAX_HEAD_BYTES
from harness.exposition import total
from harness.load import host_port
from harness.processes import report
from harness.server import Server

PROBE_TIMEOUT = 2.0  # the Deployment's livenessProbe.timeoutSeconds, and the scrape's bound here
CLOSED_WITHIN = 10.0
STALLED = 60

HEADS = {
    "mid_request_line": b"GET /metr",
    "mid_headers": b"GET /metrics HTTP/1.1\r\nHost: pod\r\nAccept: text/pl",
}


def _connect(address: tuple[str, int], payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    if payload:
        sock.sendall(payload)
    return sock


def _closed_by_server(socks: list[socket.socket], within: float) -> list[socket.socket]:
    """Waits up to `within` seconds for the server to close each socket; returns those still open."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + within
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(0.2):
            try:
                data = key.fileobj.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                open_.discard(key.fileobj)
    selector.close()
    return list(open_)


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status = requests.get(url, timeout=PROBE_TIMEOUT).status_code
    return status, time.monotonic() - started


def _liveness(server: Server) -> str:
    return server.metrics.removesuffix("/metrics") + "/healthz"


def _closed(server: Server, reason: str) -> float:
    return total(server.scrape(), METRICS_PORT_CONNECTIONS_CLOSED_TOTAL, reason=reason)


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.parametrize("stalled_at", sorted(HEADS))
def test_stalled_heads_hold_no_thread_and_are_closed_and_counted(server, stalled_at):
    address = host_port(server.metrics)
    before = _closed(server, "head_timeout")
    threads = _threads(server.process.pid)
    socks = [_connect(address, HEADS[stalled_at]) for _ in range(STALLED)]
    try:
        started = time.monotonic()
        answers = {url: _timed_get(url) for url in (server.metrics, _liveness(server))}
        threads_stalled = _threads(server.process.pid)
        still_open = _closed_by_server(socks, CLOSED_WITHIN - (time.monotonic() - started))
        closed_after = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    counted = _closed(server, "head_timeout") - before
    report(
        f"metrics port, {STALLED} stalled {stalled_at}",
        scrape_s=round(answers[server.metrics][1], 3),
        liveness_s=round(answers[_liveness(server)][1], 3),
        master_threads=f"{threads} -> {threads_stalled}",
        all_closed_after_s=round(closed_after, 2),
        counted=counted,
    )
    for url, (status, elapsed) in answers.items():
        assert status == 200 and elapsed < PROBE_TIMEOUT, (url, status, elapsed)
    assert threads_stalled == threads, "a stalled client took a thread"
    assert still_open == [], f"{len(still_open)} of {STALLED} stalled connections open after {CLOSED_WITHIN}s"
    # Not before the deadline: a slow but honest client has that long.
    assert closed_after >= HEAD_DEADLINE_SECONDS - 0.5
    assert counted == STALLED


def test_a_burst_of_connects_leaves_the_scrape_and_the_probe_answering(server):
    address = host_port(server.metrics)
    threads = _threads(server.process.pid)
    started = time.monotonic()
    socks = [_connect(address) for _ in range(300)]
    try:
        connected = time.monotonic() - started
        answers = {url: _timed_get(url) for url in (server.metrics, _liveness(server))}
        threads_burst = _threads(server.process.pid)
    finally:
        for sock in socks:
            sock.close()
    report(
        "metrics port, 300 connects held open",
        connect_all_s=round(connected, 3),
        scrape_s=round(answers[server.metrics][1], 3),
        liveness_s=round(answers[_liveness(server)][1], 3),
        master_threads=f"{threads} -> {threads_burst}",
    )
    for url, (status, elapsed) in answers.items():
        assert status == 200 and elapsed < PROBE_TIMEOUT, (url, status, elapsed)
    assert threads_burst == threads


def test_beyond_the_connection_limit_the_oldest_silent_ones_go(server):
    address = host_port(server.metrics)
    before = _closed(server, "connection_limit")
    extra = 40
    socks = [_connect(address) for _ in range(MAX_CONNECTIONS + extra)]
    try:
        status, elapsed = _timed_get(server.metrics)
        assert status == 200 and elapsed < PROBE_TIMEOUT, (status, elapsed)
        # The scrape itself evicted one more of the silent ones.
        evicted = _closed(server, "connection_limit") - before
        assert extra <= evicted <= extra + 3, evicted
        assert len(_closed_by_server(socks[: extra + 1], 1.0)) == 0, "the oldest were evicted"
    finally:
        for sock in socks:
            sock.close()


def test_an_oversized_head_is_closed_and_counted(server):
    before = _closed(server, "head_too_large")
    sock = _connect(host_port(server.metrics))
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * (MAX_HEAD_BYTES + 1024))
        assert _closed_by_server([sock], 2.0) == []
    finally:
        sock.close()
    assert _closed(server, "head_too_large") - before == 1


def test_liveness_answers_while_stalled_bodies_hold_every_worker_thread(server):
    """The probe that used to hit the workers: 2 x (2 workers x 4 threads) bodies stalled after one byte."""
    address = host_port(server.app)
    head = b"POST /predict HTTP/1.1\r\nHost: pod\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    socks = [_connect(address, head) for _ in range(16)]
    answers = []
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            answers.append(_timed_get(_liveness(server)))
            time.sleep(0.5)
    finally:
        for sock in socks:
            sock.close()
    report(
        "liveness with 16 stalled bodies on the app port",
        probes=len(answers),
        slowest_s=round(max(e for _, e in answers), 3),
    )
    assert all(status == 200 and elapsed < PROBE_TIMEOUT for status, elapsed in answers), answers
