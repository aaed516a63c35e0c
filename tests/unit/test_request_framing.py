"""Where a request ends (app/request_framing.py), against gunicorn's own parser on the same bytes, and the shared
table of connections per worker (app/worker.py)."""

from __future__ import annotations

import mmap
import os
import time

import pytest
from gunicorn.config import Config
from gunicorn.http import errors as http_errors
from gunicorn.http.errors import NoMoreData
from gunicorn.http.parser import RequestParser
from hypothesis import given, settings
from hypothesis import strategies as st

from app import connection_table as table
from app.request_framing import RequestFraming, Verdict

MAX_BODY = 4096


def framing() -> RequestFraming:
    return RequestFraming(max_header_bytes=8192, max_body_bytes=MAX_BODY)


def gunicorn_body(data: bytes) -> bytes:
    """The body of the first request in `data` as gunicorn reads it; NoMoreData when `data` is not enough."""
    request = next(RequestParser(Config(), iter([data]), ("127.0.0.1", 1)))
    return request.body.read()


@st.composite
def requests(draw) -> tuple[bytes, bytes]:
    """A valid request (its bytes, its body): a Content-Length or a chunked body, extra headers, maybe a trailer."""
    body = draw(st.binary(max_size=600))
    headers = [b"Host: t"]
    headers += [b"X-H%d: %s" % (i, b"v" * n) for i, n in enumerate(draw(st.lists(st.integers(0, 40), max_size=4)))]
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True) if b > a]
        ext = b";name=value" if draw(st.booleans()) else b""
        chunks = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces)
        trailer = b"X-Trailer: 1\r\n" if draw(st.booleans()) else b""
        framed = chunks + b"0\r\n" + trailer + b"\r\n"
        headers.append(b"Transfer-Encoding: chunked")
    else:
        framed = body
        headers.append(b"Content-Length: %d" % len(body))
    if draw(st.booleans()):
        headers.append(b"Expect: 100-continue")
    head = b"POST /p HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    return head + framed, body


@settings(max_examples=300, deadline=None)
@given(requests(), st.data())
def test_a_request_is_ready_exactly_when_its_last_byte_arrives(request, data):
    raw, body = request
    # Bytes arrive in arbitrary pieces; a pipelined next request may follow in the same read.
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=8))))
    f = framing()
    for cut in cuts:
        assert f.scan(raw[:cut]) in (Verdict.NEED_HEADERS, Verdict.NEED_BODY), cut
    assert f.scan(raw + data.draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n"]))) is Verdict.READY
    # Ready means gunicorn can read the whole body from those bytes alone, and finds the same body.
    assert gunicorn_body(raw) == body
    # And one byte less is not enough for gunicorn either (it fails, or reads a short body): the scan never hands
    # a request over before gunicorn could read all of it without waiting on the socket.
    try:
        short = gunicorn_body(raw[:-1])
    except (NoMoreData, ValueError, OSError, http_errors.ParseException):
        return
    assert short != body


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 5\r\nContent-Length: 5",  # two lengths
        b"Content-Length: +5",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked",
        b"Transfer-Encoding: gzip",  # not ending in chunked
        b"Transfer-Encoding: chunked, chunked",
        b"Transfer-Encoding: br, chunked",  # unknown coding
        b"Expect: something-else",
        b"Content-Length: %d" % (MAX_BODY + 1),  # refused with 413 from the header alone
    ],
)
def test_framing_gunicorn_refuses_is_handed_over_at_once(head):
    raw = b"POST /p HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n\r\nabc"
    assert framing().scan(raw) is Verdict.HAND_OFF


@pytest.mark.parametrize("chunk", [b"zz\r\n", b"5\r\nabcdeXX"])  # a bad size, a chunk without its CRLF
def test_a_malformed_chunk_is_handed_over_for_gunicorns_400(chunk):
    raw = b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    assert framing().scan(raw) is Verdict.HAND_OFF


def test_bounds():
    f = framing()
    assert f.scan(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000) is Verdict.TOO_LARGE
    # A chunked body over the limit is handed over (the app answers 413) once the limit is passed.
    f = framing()
    head = b"POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert f.scan(head + b"1000\r\n" + b"a" * MAX_BODY) is Verdict.NEED_BODY
    assert f.scan(head + b"1000\r\n" + b"a" * 4096 + b"\r\n1\r\nb") is Verdict.HAND_OFF
    # Raw bytes count too: chunk extensions carry no body but cost memory.
    f = framing()
    assert f.scan(head + b"1;e=" + b"x" * 100 + b"\r\na\r\n" + b"1;e=x\r\na\r\n" * 10000) is Verdict.TOO_LARGE


def test_expect_continue_is_noted_for_http_1_1_only():
    for version, expected in ((b"HTTP/1.1", True), (b"HTTP/1.0", False)):
        f = framing()
        raw = b"POST /p " + version + b"\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        assert f.scan(raw) is Verdict.NEED_BODY
        assert f.expects_continue is expected


def test_the_slot_table_reuses_the_slots_of_dead_and_never_started_workers(monkeypatch):
    shm = mmap.mmap(-1, table.HEADER.size + table.SLOTS * table.SLOT.size)
    first, second = table.reserve_slot(shm), table.reserve_slot(shm)
    assert (first, second) == (0, 1)
    now = time.monotonic()
    table.SLOT.pack_into(shm, table.slot_offset(first), os.getpid(), 3, now)
    assert table.live_slots(shm, now) == [(os.getpid(), 3)]  # reserved (-1) slots are not live
    # A reserved slot whose worker never wrote to it is taken back after a while; a dead pid at once.
    assert table.reserve_slot(shm) == 2
    table.SLOT.pack_into(shm, table.slot_offset(2), 2**22 + 12345, 1, now)  # beyond pid_max: no such process
    assert table.reserve_slot(shm) == 2
    monkeypatch.setattr(time, "monotonic", lambda: now + table.RESERVED_SECONDS + 1)
    assert table.reserve_slot(shm) == 1
    # A worker that stopped writing is no longer live: it does not hold the others back.
    assert table.live_slots(shm, now + table.LIVE_SECONDS + 1) == []
