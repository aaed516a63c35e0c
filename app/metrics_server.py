"""The gunicorn master's HTTP server on the metrics port: `/metrics` and the liveness probe's `/healthz`.

Whatever its clients do, a scrape and a probe get an answer. One thread owns the listening socket and
every connection's socket I/O, all non-blocking: a client that connects and sends nothing, or half a
request head, costs a socket and a few bytes, never a thread, and is closed when its head is not complete
within ``HEAD_DEADLINE_SECONDS``; an answer not taken within ``WRITE_DEADLINE_SECONDS`` is dropped the same
way. A complete head goes to one of ``HANDLER_THREADS`` threads, which run the stdlib's wsgiref handler on
it into memory (so parsing, the WSGI environment and prometheus_client's exposition, content negotiation
included, are what they always were) and hand the bytes back to be written. At most ``MAX_CONNECTIONS``
are open at once: the next one evicts the oldest still sending its head. Every connection closed without an
answer is counted by reason (``app.metrics.METRICS_PORT_CLOSE_REASONS``). Why: docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from app.metrics import metrics_port_closed

log = logging.getLogger("app.metrics_server")

# Connections the kernel queues before the accept loop takes them: a burst of connects must not overflow
# it, or the clients' SYNs are dropped and retried after 1, 3, 7... seconds.
LISTEN_BACKLOG = 1024
# Time from accept to the end of the request head. A scrape's head is one small packet.
HEAD_DEADLINE_SECONDS = 5.0
# Time to take a whole answer once it is ready.
WRITE_DEADLINE_SECONDS = 5.0
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 512
# A scrape and a probe run side by side; scrapes serialise on the multiprocess files anyway.
HANDLER_THREADS = 2
# Connections accepted per turn of the loop, so that a connect flood cannot starve the ones already open.
ACCEPT_BATCH = 64
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    address: tuple
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    sent: int = 0


class _InMemoryHandler(WSGIRequestHandler):
    """wsgiref's handler reading a head already received and writing the answer to memory, not a socket."""

    def __init__(self, head: bytes, address: tuple, server: MetricsServer) -> None:
        self._head = head
        super().__init__(None, address, server)

    def setup(self) -> None:
        self.connection = None
        self.rfile = io.BytesIO(self._head)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        pass  # the answer stays in wfile for the caller

    def log_message(self, format, *args):  # scrapes and probes every few seconds would drown the access log
        pass


def _head_complete(data: bytearray, searched_from: int) -> bool:
    start = max(0, searched_from - 3)
    return data.find(b"\r\n\r\n", start) >= 0 or data.find(b"\n\n", start) >= 0


class MetricsServer(WSGIServer):
    """wsgiref's server, kept for its socket set-up and WSGI environment; the serving loop is this one's."""

    request_queue_size = LISTEN_BACKLOG
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: WSGIApp) -> None:
        super().__init__(address, _InMemoryHandler)
        self.set_app(app)
        self.socket.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        # Insertion order is deadline order: every deadline is "now + the same constant".
        self._reading: dict[socket.socket, _Connection] = {}
        self._writing: dict[socket.socket, _Connection] = {}
        self._answering = 0
        self._heads: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[_Connection] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._answer_heads, name=f"metrics-handler-{i}", daemon=True)
            for i in range(HANDLER_THREADS)
        ]
        self._threads.append(threading.Thread(target=self.serve_forever, name="metrics-server", daemon=True))

    def start(self) -> MetricsServer:
        for thread in self._threads:
            thread.start()
        return self

    @property
    def open_connections(self) -> int:
        return len(self._reading) + self._answering + len(self._writing)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        while not self._stop.is_set():
            try:
                self._turn(poll_interval)
            except Exception:  # the port must outlive any one connection's surprise
                log.exception("metrics port: serving loop failed, continuing")
                time.sleep(0.05)
        for connection in [*self._reading.values(), *self._writing.values()]:
            self._close(connection)

    def _turn(self, poll_interval: float) -> None:
        now = time.monotonic()
        first = min((next(iter(d.values())).deadline for d in (self._reading, self._writing) if d), default=now + 1)
        timeout = min(max(first - now, 0.0), poll_interval)
        for key, events in self._selector.select(timeout):
            if key.fileobj is self.socket:
                self._accept()
            elif key.fileobj is self._wake_read:
                self._drain_wake()
            elif events & selectors.EVENT_READ:
                self._read(key.data)
            else:
                self._write(key.data)
        self._take_answers()
        self._expire(time.monotonic())

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        for _ in range(HANDLER_THREADS):
            self._heads.put(None)
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(5)
        self.server_close()
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()

    def _wake(self) -> None:
        # A full buffer (BlockingIOError) means the loop has wake-ups waiting already.
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, or the client gave up before we took it
                log.warning("metrics port: accept failed: %s", exc)
                time.sleep(0.05)  # the listener stays readable: do not spin on it
                return
            if self.open_connections >= MAX_CONNECTIONS:
                if not self._reading:
                    metrics_port_closed.inc("connection_limit")
                    sock.close()
                    continue
                self._drop(next(iter(self._reading.values())), "connection_limit")
            sock.setblocking(False)
            connection = _Connection(sock, address, time.monotonic() + HEAD_DEADLINE_SECONDS)
            self._reading[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _read(self, connection: _Connection) -> None:
        try:
            chunk = connection.sock.recv(8192)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client left before its head was complete: nothing to answer
            self._close(connection)
            return
        searched_from = len(connection.data)
        connection.data += chunk
        if _head_complete(connection.data, searched_from):
            self._selector.unregister(connection.sock)
            del self._reading[connection.sock]
            self._answering += 1
            self._heads.put(connection)
        elif len(connection.data) > MAX_HEAD_BYTES:
            self._drop(connection, "head_too_large")

    def _answer_heads(self) -> None:
        while (connection := self._heads.get()) is not None:
            try:
                handler = _InMemoryHandler(bytes(connection.data), connection.address, self)
                connection.data = bytearray(handler.wfile.getvalue())
            except Exception:  # wsgiref answers the app's own errors with a 500; this is anything else
                log.exception("metrics port: answering a request failed")
                connection.data = bytearray()
            self._answers.put(connection)
            self._wake()

    def _take_answers(self) -> None:
        while True:
            try:
                connection = self._answers.get_nowait()
            except queue.Empty:
                return
            self._answering -= 1
            if not connection.data:
                self._close(connection)
                continue
            connection.deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
            self._writing[connection.sock] = connection
            self._selector.register(connection.sock, selectors.EVENT_WRITE, connection)
            self._write(connection)  # most answers fit the socket's buffer at once

    def _write(self, connection: _Connection) -> None:
        try:
            connection.sent += connection.sock.send(memoryview(connection.data)[connection.sent :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the client went away
            self._close(connection)
            return
        if connection.sent >= len(connection.data):
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_WR)
            self._close(connection)

    def _expire(self, now: float) -> None:
        for pending, reason in ((self._reading, "head_timeout"), (self._writing, "write_timeout")):
            while pending:
                connection = next(iter(pending.values()))
                if connection.deadline > now:
                    break
                self._drop(connection, reason)

    def _drop(self, connection: _Connection, reason: str) -> None:
        metrics_port_closed.inc(reason)
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self._reading.pop(connection.sock, None)
        self._writing.pop(connection.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(connection.sock)
        connection.sock.close()


def start_metrics_server(host: str, port: int, app: WSGIApp) -> MetricsServer:
    return MetricsServer((host, port), app).start()
