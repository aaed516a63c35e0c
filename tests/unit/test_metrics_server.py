"""app/metrics_server.py in-process, on real 127.0.0.1 sockets: the same answers wsgiref gave, and an answer
nobody takes dropped at its deadline."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from app import metrics_server
from app.metrics import metrics_port_closed
from app.metrics_server import MetricsServer


def _echo(environ, start_response):
    """Answers with what a WSGI app can see of the request, so that two servers' environs are compared."""
    seen = {
        k: environ.get(k, "") for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "HTTP_ACCEPT", "SERVER_PROTOCOL")
    }
    status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("X-Seen", repr(sorted(seen.items())))])
    return [b"%d bytes of body\n" % int(environ.get("CONTENT_LENGTH") or 0)]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture()
def servers():
    new = MetricsServer(("127.0.0.1", 0), _echo).start()
    old = make_server("127.0.0.1", 0, _echo, server_class=_ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=old.serve_forever, daemon=True).start()
    yield new, old
    new.shutdown()
    old.shutdown()
    old.server_close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    # The Date header is the one line that may differ between two answers.
    return b"\r\n".join(line for line in b"".join(chunks).split(b"\r\n") if not line.startswith(b"Date: "))


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /metrics HTTP/1.1\r\nHost: pod\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        b"GET /metrics?name[]=up HTTP/1.0\r\n\r\n",
        b"HEAD /healthz HTTP/1.1\r\nHost: pod\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nHost: pod\r\nContent-Length: 4\r\n\r\nbody",
        b"GET /missing HTTP/1.1\r\nHost: pod\r\n\r\n",
        b"GET /metrics\nHost: pod\n\n",
        b"BREW /metrics HTCPCP/1.0\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: pod\r\nExpect: 100-continue\r\n\r\n",
    ],
)
def test_answers_are_those_of_wsgiref(servers, request_bytes):
    new, old = servers
    assert _raw(new.server_address[1], request_bytes) == _raw(old.server_address[1], request_bytes)


def test_an_answer_nobody_takes_is_dropped_at_its_deadline(monkeypatch):
    monkeypatch.setattr(metrics_server, "WRITE_DEADLINE_SECONDS", 0.5)
    big = b"x" * (32 * 1024 * 1024)  # more than both sockets' buffers hold

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [big]

    server = MetricsServer(("127.0.0.1", 0), app).start()
    before = metrics_port_closed.value("write_timeout")
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(server.server_address)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: pod\r\n\r\n")
            deadline = time.monotonic() + 5
            while metrics_port_closed.value("write_timeout") == before and time.monotonic() < deadline:
                time.sleep(0.05)
        assert metrics_port_closed.value("write_timeout") == before + 1
        # Still serving others.
        connection = http.client.HTTPConnection(*server.server_address, timeout=2)
        connection.request("GET", "/metrics")
        assert connection.getresponse().status == 200
    finally:
        server.shutdown()
