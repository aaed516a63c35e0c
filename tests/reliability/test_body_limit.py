"""Bodies over the limit are refused before they are read in full or parsed: a declared Content-Length over the
limit gets 413 with no body sent at all, and a chunked body gets 413 once it passes the limit, without the
server waiting for its end."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import requests

from app.validation import MAX_BODY_BYTES
from harness.exposition import total
from harness.load import BODY, host_port
from harness.processes import report

HEAD = "POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


def _answer(sock: socket.socket, timeout: float) -> tuple[int, dict, float]:
    """Read one response (the server closes after it); status, JSON body and seconds to the first byte."""
    sock.settimeout(timeout)
    started = time.monotonic()
    data = sock.recv(65536)
    first_byte = time.monotonic() - started
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), first_byte


def _too_large(server) -> float:
    return total(server.scrape(), "model_invalid_requests_total", reason="body_too_large")


def test_a_declared_length_over_the_limit_is_refused_without_reading_a_byte(server):
    before = _too_large(server)
    for declared in (MAX_BODY_BYTES + 1, 10**12):
        with socket.create_connection(host_port(server.app)) as sock:
            # Headers only. The connection stays open for writing: a server that waited for the body would hang.
            sock.sendall(f"{HEAD}Content-Length: {declared}\r\n\r\n".encode())
            status, answer, first_byte = _answer(sock, timeout=5)
        report("declared_too_large", content_length=declared, status=status, first_byte_ms=round(first_byte * 1000, 1))
        assert (status, answer["error"]) == (413, "body_too_large"), declared
        assert first_byte < 1.0, f"the refusal took {first_byte:.2f}s: the server waited for the body"
    assert _too_large(server) == before + 2


# werkzeug 3.1's LimitedStream.readall (what request.get_data() calls on a streamed body) stops AT
# MAX_CONTENT_LENGTH and returns the first MAX_BODY_BYTES bytes instead of raising 413: app/routes.py looks one
# byte further and refuses the body. These tests keep that true.


def _send_chunked(sock: socket.socket, body: bytes, terminate: bool) -> None:
    sock.sendall(f"{HEAD}Transfer-Encoding: chunked\r\n\r\n".encode())
    for start in range(0, len(body), 65536):
        chunk = body[start : start + 65536]
        sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    if terminate:
        sock.sendall(b"0\r\n\r\n")


def test_a_chunked_body_over_the_limit_is_refused_without_waiting_for_its_end(server):
    before = _too_large(server)
    with socket.create_connection(host_port(server.app)) as sock:
        # No terminating 0-chunk: the body never ends, only the limit can end the request.
        _send_chunked(sock, b"[" * (MAX_BODY_BYTES + 65536), terminate=False)
        status, answer, _ = _answer(sock, timeout=10)
    assert (status, answer["error"]) == (413, "body_too_large")
    assert _too_large(server) == before + 1


def test_a_chunked_body_over_the_limit_is_not_accepted_from_its_first_megabyte(server):
    # A valid request padded with whitespace to three times the limit: the first MAX_BODY_BYTES parse fine.
    with socket.create_connection(host_port(server.app)) as sock:
        # A server that stops reading at the limit may close before the rest is sent: read its answer anyway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _send_chunked(sock, BODY + b" " * (3 * MAX_BODY_BYTES), terminate=True)
        status, answer, _ = _answer(sock, timeout=10)
    assert (status, answer.get("error")) == (413, "body_too_large")


def test_a_body_at_the_limit_is_read_and_the_server_keeps_serving(server):
    # Exactly the limit: read and parsed (and refused as JSON, not as too large): the limit is not off by one.
    padded = BODY + b" " * (MAX_BODY_BYTES - len(BODY))
    at_limit = requests.post(f"{server.app}/predict", data=padded, headers={"Content-Type": "application/json"})
    assert at_limit.status_code == 200, at_limit.text[:200]
    after = requests.post(f"{server.app}/predict", data=BODY, headers={"Content-Type": "application/json"}, timeout=5)
    assert after.status_code == 200
