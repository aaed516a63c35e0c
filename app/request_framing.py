"""Where an HTTP/1.1 request ends, judged from the bytes received so far, without blocking.

`app.worker` buffers a connection's bytes in its poller and hands the connection to a thread only once
`RequestFraming.scan` says the request is all there, so no thread ever waits on a client. The scan is
incremental (each call resumes where the last one stopped) and deliberately mirrors gunicorn's own framing
rules (`gunicorn.http.message.Request.set_body_reader`, `gunicorn.http.body.ChunkedReader`): whatever gunicorn
refuses before reading a body (two `Content-Length`, a `Transfer-Encoding` it does not support, a bad chunk size)
is handed over at once, so the client still gets gunicorn's 400, not a timeout.

Verdicts:

- `NEED_HEADERS` / `NEED_BODY`: wait for more bytes (the deadline that applies depends on which).
- `READY`: the buffer holds a whole request (perhaps followed by the start of the next one).
- `HAND_OFF`: give it to a thread now, though the body is not all here: gunicorn or the app will refuse it
  without reading on (malformed framing: 400; a body over the app's limit: 413).
- `TOO_LARGE`: the headers, or the raw bytes of a body, exceed every bound a valid request stays under.
"""

from __future__ import annotations

import enum

CRLF = b"\r\n"
# Transfer codings gunicorn knows; any other makes it answer 501 before reading a body.
_KNOWN_CODINGS = frozenset({b"chunked", b"identity", b"gzip", b"deflate", b"compress"})
_HEX = frozenset(b"0123456789abcdefABCDEF")


class Verdict(enum.Enum):
    NEED_HEADERS = "need_headers"
    NEED_BODY = "need_body"
    READY = "ready"
    HAND_OFF = "hand_off"
    TOO_LARGE = "too_large"


class _Body(enum.Enum):
    UNKNOWN = 0  # headers not complete yet
    LENGTH = 1
    CHUNKED = 2


class _Chunk(enum.Enum):
    SIZE = 0
    DATA = 1
    CRLF = 2
    TRAILER = 3


class RequestFraming:
    """The framing state of the one request at the start of a connection's buffer."""

    __slots__ = (
        "_chunk",
        "_decoded",
        "_kind",
        "_length",
        "_pos",
        "_remaining",
        "_searched",
        "body_start",
        "expects_continue",
        "max_body_bytes",
        "max_header_bytes",
        "max_line_bytes",
        "max_raw_body_bytes",
    )

    def __init__(self, max_header_bytes: int, max_body_bytes: int, max_line_bytes: int = 8190) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        # Chunk-size lines and extensions cost bytes that do not count against the body limit: bound the raw
        # bytes too, generously (a valid body of many small chunks stays well under this).
        self.max_raw_body_bytes = 2 * max_body_bytes + 65536
        self.max_line_bytes = max_line_bytes
        self._searched = 0
        self.body_start = -1
        self._kind = _Body.UNKNOWN
        self._length = 0
        self._pos = 0
        self._chunk = _Chunk.SIZE
        self._remaining = 0
        self._decoded = 0
        # The client sent `Expect: 100-continue` (HTTP/1.1) and may wait for an interim answer before its body.
        self.expects_continue = False

    @property
    def headers_complete(self) -> bool:
        return self.body_start >= 0

    def scan(self, buf: bytes | bytearray) -> Verdict:
        """Judge `buf`, which only ever grows between calls (the bytes received so far for this request)."""
        if self.body_start < 0:
            verdict = self._scan_headers(buf)
            if verdict is not None:
                return verdict
        if self._kind is _Body.LENGTH:
            return Verdict.READY if len(buf) - self.body_start >= self._length else Verdict.NEED_BODY
        return self._scan_chunked(buf)

    # ---- headers ---------------------------------------------------------------------------------------------

    def _scan_headers(self, buf: bytes | bytearray) -> Verdict | None:
        # Empty lines before a request line are allowed (RFC 9112 section 2.2) and would look like an end.
        start = 0
        while buf.startswith(CRLF, start):
            start += 2
        end = buf.find(b"\r\n\r\n", max(start, self._searched - 3))
        if end < 0:
            self._searched = len(buf)
            if len(buf) > self.max_header_bytes:
                return Verdict.TOO_LARGE
            return Verdict.NEED_HEADERS
        if end - start > self.max_header_bytes:
            return Verdict.TOO_LARGE
        self.body_start = end + 4
        return self._frame(bytes(buf[start:end]).split(CRLF))

    def _frame(self, lines: list[bytes]) -> Verdict | None:
        """Choose how the body ends, as gunicorn will; None to go on to the body."""
        version = lines[0].rpartition(b" ")[2]
        lengths: list[bytes] = []
        codings: list[bytes] = []
        expect: list[bytes] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            name = name.lower()
            if name == b"content-length":
                lengths.append(value.strip(b" \t"))
            elif name == b"transfer-encoding":
                codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
            elif name == b"expect":
                expect.append(value.strip(b" \t").lower())
        if expect:
            if expect != [b"100-continue"]:
                return Verdict.HAND_OFF  # gunicorn answers 417 to any other expectation
            self.expects_continue = version == b"HTTP/1.1"
        if codings:
            chunked = (
                not lengths
                and version == b"HTTP/1.1"
                and codings[-1] == b"chunked"
                and codings.count(b"chunked") == 1
                and all(c in _KNOWN_CODINGS for c in codings)
            )
            if not chunked:
                return Verdict.HAND_OFF  # gunicorn refuses the framing (400 or 501) before reading a body
            self._kind = _Body.CHUNKED
            self._pos = self.body_start
            return None
        self._kind = _Body.LENGTH
        if not lengths:
            self._length = 0
            return None
        text = lengths[0].decode("latin-1")
        if len(lengths) > 1 or not text.isnumeric():
            return Verdict.HAND_OFF
        try:
            self._length = int(text)
        except ValueError:
            return Verdict.HAND_OFF
        if self._length > self.max_body_bytes:
            return Verdict.HAND_OFF  # the app answers 413 from the header alone
        return None

    # ---- chunked body ----------------------------------------------------------------------------------------

    def _scan_chunked(self, buf: bytes | bytearray) -> Verdict:
        end = len(buf)
        if end - self.body_start > self.max_raw_body_bytes:
            return Verdict.TOO_LARGE
        while True:
            if self._chunk is _Chunk.SIZE:
                eol = buf.find(CRLF, self._pos)
                if eol < 0:
                    return Verdict.HAND_OFF if end - self._pos > self.max_line_bytes else Verdict.NEED_BODY
                size = bytes(buf[self._pos : eol]).split(b";", 1)[0].rstrip(b" \t")
                if not size or not _HEX.issuperset(size):
                    return Verdict.HAND_OFF  # gunicorn: InvalidChunkSize, 400
                self._remaining = int(size, 16)
                self._pos = eol + 2
                self._chunk = _Chunk.DATA if self._remaining else _Chunk.TRAILER
            elif self._chunk is _Chunk.DATA:
                take = min(end - self._pos, self._remaining)
                self._pos += take
                self._remaining -= take
                self._decoded += take
                if self._decoded > self.max_body_bytes:
                    return Verdict.HAND_OFF  # enough for the app to see the body is over its limit: 413
                if self._remaining:
                    return Verdict.NEED_BODY
                self._chunk = _Chunk.CRLF
            elif self._chunk is _Chunk.CRLF:
                if end - self._pos < 2:
                    return Verdict.NEED_BODY
                if buf[self._pos : self._pos + 2] != CRLF:
                    return Verdict.HAND_OFF  # gunicorn: ChunkMissingTerminator, 400
                self._pos += 2
                self._chunk = _Chunk.SIZE
            else:
                if buf[self._pos : self._pos + 2] == CRLF or buf.find(b"\r\n\r\n", self._pos) >= 0:
                    return Verdict.READY
                if end - self._pos > self.max_header_bytes:
                    return Verdict.HAND_OFF  # gunicorn: trailer section over its limit, 400
                return Verdict.NEED_BODY
