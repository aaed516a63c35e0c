"""What a refused body leaves on a kept-alive connection.

A 413 is answered before the body is read (werkzeug checks `Content-Length` first; a chunked body stops at the
limit). gunicorn keeps the connection alive and, before reading the next request, reads what was left of the
body, but at most 64 KiB: a longer rest makes it close the connection with bytes unread, which the kernel turns
into a reset that can reach the client before it has read the 413. So after the answer is sent, the rest is
read and dropped here, up to ``DRAIN_BYTES`` and for ``DRAIN_SECONDS`` at most; a body not over by then (a
client that declared more than it sends) has the connection's read side shut, and gunicorn closes it.
"""

from __future__ import annotations

import contextlib
import socket
import time

from flask import Response, request

DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 1.0


def drain_after(response: Response) -> Response:
    """Read and drop the rest of the request body once ``response`` (a refusal) has been sent."""
    sock = request.environ.get("gunicorn.socket")
    body = request.environ.get("wsgi.input")
    if sock is not None and body is not None:
        response.call_on_close(lambda: _drain(sock, body))
    return response


def _drain(sock: socket.socket, body) -> None:
    timeout = sock.gettimeout()
    deadline = time.monotonic() + DRAIN_SECONDS
    drained = 0
    try:
        while drained < DRAIN_BYTES and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            chunk = body.read(65536)
            if not chunk:
                return  # the whole body is read: the connection can serve the next request
            drained += len(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
