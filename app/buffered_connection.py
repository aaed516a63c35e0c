"""A client connection as app/worker.py's poller holds it: the bytes read so far of its next request, how far
that request has come (idle, headers, body) and the deadline of that phase."""

from __future__ import annotations

import os

from gunicorn.workers.gthread import TConn

from app.request_framing import RequestFraming
from app.validation import MAX_BODY_BYTES

HEADER_TIMEOUT = float(os.environ.get("REQUEST_HEADER_TIMEOUT", "5"))
MAX_HEADER_BYTES = int(os.environ.get("REQUEST_MAX_HEADER_BYTES", "65536"))


class Phase:
    IDLE = 0  # kept alive, no byte of a next request yet
    HEADERS = 1
    BODY = 2


class BufferedConn(TConn):
    """A connection with the bytes the poller has read for its next request."""

    def __init__(self, cfg, sock, client, server) -> None:
        super().__init__(cfg, sock, client, server)
        self.buf = bytearray()
        self.framing: RequestFraming | None = None
        self.phase = Phase.HEADERS
        self.deadline = 0.0
        self.continue_sent = False
        self.paused = False

    def start_request(self, data: bytes, idle: bool, now: float, keepalive: float) -> None:
        self.buf = bytearray(data)
        self.framing = RequestFraming(MAX_HEADER_BYTES, MAX_BODY_BYTES, self.cfg.limit_request_field_size)
        self.continue_sent = False
        self.phase = Phase.IDLE if idle else Phase.HEADERS
        self.deadline = now + (keepalive if idle else HEADER_TIMEOUT)
