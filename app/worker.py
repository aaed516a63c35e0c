"""gunicorn's gthread worker, changed in three ways: no client can hold a thread, connections spread evenly, and
with one thread (THE config) the poller serves each request itself.

1. **Requests are read by the poller, not by threads.** gthread hands a connection to a thread as soon as it is
   readable, and the thread then blocks until the request is whole: sixteen connections that send headers and
   one byte of body hold every thread of two 4-thread workers, and `/healthz` stops answering. Here the worker's
   poller reads each connection's bytes without blocking into a buffer of its own until the request is whole
   (`app.request_framing`), under a deadline for the headers and one for the body, and only then hands the
   connection and its buffer to a thread, whose parser reads the buffer first. A connection that misses a
   deadline or sends more than any valid request holds is closed by the poller and counted in
   `http_connections_closed_total{reason}`. A client that sent `Expect: 100-continue` gets its interim answer
   from the poller. Kept-alive connections wait in the poller, as before, for `keepalive` seconds.
2. **Each worker accepts only while it holds no more connections than the least-loaded live worker** (plus
   `ACCEPT_SLACK`). Workers publish their open connections in a small shared-memory table made by the master
   before it forks; a worker that declines stops polling the listener, so the connection waits in the backlog
   for the least-loaded worker, which does. Without this, whichever worker woke first took the connection, and
   kept-alive clients piled onto one worker (docs/reliability.md, "Slow clients and connection spread").
   Not with `reuse_port` (each worker's own listener: declining would strand what the kernel queued on it).
3. **With `threads = 1` there is no pool.** The poller runs each whole request on its own thread: no hand-off to
   a pool thread and back (a queue, a pipe write, two GIL hand-overs). More threads: the pool, as in gthread.

Plain HTTP/1.x only (gunicorn refuses to start it with TLS or HTTP/2). Settings (environment, seconds):
`REQUEST_HEADER_TIMEOUT` (default 5; from the first byte of a request, or from the connect), `REQUEST_BODY_TIMEOUT`
(default 5; from the end of the headers), `REQUEST_MAX_HEADER_BYTES` (default 65536), `ACCEPT_SLACK` (default 0;
connections over the least-loaded worker a worker may hold and still accept), `WORKER_BUFFER_BUDGET_BYTES`
(default 64 MiB; request bytes a worker buffers at most: past it, it stops reading bodies until requests leave).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import ThreadWorker

from app import connection_table as table
from app.buffered_connection import HEADER_TIMEOUT, BufferedConn, Phase
from app.request_framing import Verdict

BODY_TIMEOUT = float(os.environ.get("REQUEST_BODY_TIMEOUT", "5"))
ACCEPT_SLACK = int(os.environ.get("ACCEPT_SLACK", "0"))
BUFFER_BUDGET = int(os.environ.get("WORKER_BUFFER_BUDGET_BYTES", str(64 * 1024 * 1024)))
STOP_LINGER = 2.0  # seconds a stopping worker keeps idle kept-alive connections, for a request on its way
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
EXPIRY_SCAN_SECONDS = 0.1
# How long a blocking read or send in a request thread may wait (struct timeval).
KERNEL_TIMEOUT = struct.pack("ll", int(BODY_TIMEOUT), int(BODY_TIMEOUT % 1 * 1_000_000))
# A worker rewrites its table entry at least this often, even when idle and unchanged (its heartbeat there).
PUBLISH_SECONDS = 0.5


# ---- the worker ----------------------------------------------------------------------------------------------


class BufferingWorker(ThreadWorker):
    @classmethod
    def check_config(cls, cfg, log) -> None:
        super().check_config(cfg, log)
        # The poller frames HTTP/1.x on plain TCP; TLS and HTTP/2 (which gthread also serves) would reach a
        # thread unframed. The pod serves plain HTTP/1.1 behind its Service: refuse to start otherwise.
        if cfg.is_ssl or "h2" in cfg.http_protocols:
            raise RuntimeError("app.worker.BufferingWorker serves plain HTTP/1.x only (no TLS, no HTTP/2)")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Runs in the master, before the fork: the slot is chosen where no other worker can race for it.
        self.slot = table.reserve_slot()
        self.reading: dict[BufferedConn, None] = {}  # connections whose request the poller is reading
        self.ready: deque[BufferedConn] = deque()  # one thread: whole requests, the first being served
        self.buffered = 0  # bytes held in their buffers
        self.paused = 0  # connections whose reading waits for the buffers to shrink
        self.next_expiry_scan = 0.0
        self.published = (-1, 0.0)  # (connections, when) last written to the table
        from app import metrics

        # In the master, which exports every reason at 0 from its own file (as the app's other fixed label sets);
        # a worker writes a file of its own only when it first counts one.
        metrics.initialise_connection_close_reasons()
        self.closed: dict[str, Callable[[], None]] = {
            r: metrics.connections_closed.labels(r).inc for r in metrics.CONNECTION_CLOSE_REASONS
        }

    def init_process(self) -> None:
        self.me = os.getpid()
        self.spreading = not (self.cfg.reuse_port and hasattr(socket, "SO_REUSEPORT"))
        self.in_table = self.slot is not None
        self.waker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.waker.bind(table.wake_address(self.ppid, self.me))
        self.waker.setblocking(False)
        self._publish()
        super().init_process()

    # ---- the shared table ----------------------------------------------------------------------------------

    def _publish(self) -> None:
        now = time.monotonic()
        self.published = (self.nr_conns, now)
        if self.in_table:
            table.SLOT.pack_into(table.TABLE, table.slot_offset(self.slot), self.me, self.nr_conns, now)

    def _republish(self) -> None:
        """Publish and decide whether to poll the listener, when it can have changed: this worker's count moved, a
        peer woke it, or a beat (the stamp that says this worker lives) is due. Not on every pass of a busy loop."""
        count, at = self.published
        if count != self.nr_conns or time.monotonic() - at > PUBLISH_SECONDS:
            self._publish()
            # Polling the listener only while this worker may accept: a declined connection left in a
            # level-triggered poller would wake it again at once.
            self.set_accept_enabled(self._may_accept())

    def _leave_table(self) -> None:
        # Called from the SIGTERM handler and again after the loop: a signal landing inside _publish could
        # otherwise leave this worker's entry written back after the first clear.
        self.in_table = False
        if self.slot is not None:
            table.SLOT.pack_into(table.TABLE, table.slot_offset(self.slot), 0, 0, 0.0)

    def _may_accept(self) -> bool:
        if not self.alive or self.nr_conns >= self.worker_connections:
            return False
        if self.slot is None or not self.spreading:
            return True
        others = [c for pid, c in table.live_slots(table.TABLE, time.monotonic()) if pid != self.me]
        return not others or self.nr_conns <= min(min(others), self.nr_conns) + ACCEPT_SLACK

    def _wake_eligible(self) -> None:
        """After an accept raised the least load, wake the workers that may now accept: they stopped polling the
        listener when they declined, and would otherwise only look again at their next event."""
        live = table.live_slots(table.TABLE, time.monotonic()) if self.spreading else []
        if len(live) < 2:
            return
        least = min(c for _, c in live)
        for pid, conns in live:
            if pid != self.me and conns <= least + ACCEPT_SLACK:
                # Failing means gone, or its queue full of earlier wake-ups: it is awake either way.
                with contextlib.suppress(OSError):
                    self.waker.sendto(b"!", table.wake_address(self.ppid, pid))

    def _on_wake(self, _sock) -> None:
        try:
            while self.waker.recv(64):
                pass
        except OSError:
            pass
        self.published = (-1, 0.0)  # look again at the next pass

    # ---- the loop ------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        self.poller.register(self.waker, selectors.EVENT_READ, self._on_wake)
        while self.alive:
            self.notify()
            self._republish()
            self.wait_for_and_dispatch_events(timeout=1.0)
            if not self.is_parent_alive():
                break
            self._expire(time.monotonic())
            self._resume_paused()

        # Stopping: no more connections; requests under way finish, idle connections linger briefly.
        self._leave_table()
        self.set_accept_enabled(False)
        linger = time.monotonic() + STOP_LINGER
        for conn in self.reading:
            if conn.phase == Phase.IDLE:
                conn.deadline = min(conn.deadline, linger)
        give_up = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < give_up:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=0.5)
            self._expire(time.monotonic())
            self._resume_paused()
        for conn in list(self.reading):
            self._drop(conn, None)
        self.tpool.shutdown(wait=False)
        self.waker.close()
        self.poller.close()
        self.method_queue.close()
        for s in self.sockets:
            s.close()

    def accept(self, listener) -> None:
        if not self._may_accept():
            # Another worker's load fell below ours since this loop looked: leave the connection to it.
            self.set_accept_enabled(False)
            return
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, KERNEL_TIMEOUT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, KERNEL_TIMEOUT)
        conn = BufferedConn(self.cfg, sock, client, listener.getsockname())
        self._watch(conn, b"", idle=False)
        self._publish()
        self._wake_eligible()
        self.set_accept_enabled(self._may_accept())

    # ---- reading requests in the poller --------------------------------------------------------------------

    def _watch(self, conn: BufferedConn, data: bytes, idle: bool) -> None:
        """Wait in the poller for `conn`'s next request, of which `data` was already read."""
        conn.sock.setblocking(False)
        conn.start_request(data, idle, time.monotonic(), self.cfg.keepalive)
        self.buffered += len(data)
        self.reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if data:
            self._judge(conn)

    def _on_readable(self, conn: BufferedConn, _sock) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn, None)  # the client went away: not a refusal
            return
        if conn.phase == Phase.IDLE:
            conn.phase = Phase.HEADERS
            conn.deadline = time.monotonic() + HEADER_TIMEOUT
        conn.buf += data
        self.buffered += len(data)
        self._judge(conn)

    def _judge(self, conn: BufferedConn) -> None:
        verdict = conn.framing.scan(conn.buf)
        if verdict is Verdict.NEED_HEADERS:
            return
        if verdict is Verdict.NEED_BODY:
            if conn.phase != Phase.BODY:
                conn.phase = Phase.BODY
                conn.deadline = time.monotonic() + BODY_TIMEOUT
                if conn.framing.expects_continue:
                    self._send_continue(conn)
            # Only for what the other connections hold: a request never waits on its own bytes.
            if self.buffered - len(conn.buf) > BUFFER_BUDGET:
                self._pause(conn)
            return
        if verdict is Verdict.TOO_LARGE:
            self._drop(conn, "too_large")
            return
        if verdict is Verdict.READY and conn.framing.expects_continue:
            conn.continue_sent = True  # the body came without it: no interim answer is due (RFC 9110 10.1.1)
        self._hand_off(conn)

    def _send_continue(self, conn: BufferedConn) -> None:
        # 25 bytes on a connection whose send buffer is empty (the previous answer was sent before its next
        # request was read): a non-blocking send takes them all or, on a dead connection, fails.
        with contextlib.suppress(OSError):
            conn.continue_sent = conn.sock.send(CONTINUE) == len(CONTINUE)

    def _hand_off(self, conn: BufferedConn) -> None:
        self._unwatch(conn)
        self.enqueue_req(conn)

    def _unwatch(self, conn: BufferedConn) -> None:
        self.reading.pop(conn, None)
        self.buffered -= len(conn.buf)
        if conn.paused:
            conn.paused = False
            self.paused -= 1
        else:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _drop(self, conn: BufferedConn, reason: str | None) -> None:
        self._unwatch(conn)
        conn.buf = bytearray()
        self.nr_conns -= 1
        if reason is not None:
            self.closed[reason]()
        conn.close()

    def _expire(self, now: float) -> None:
        # Deadlines are seconds long: looking ten times a second is enough, and keeps a busy loop (one pass per
        # event) from scanning every open connection per request.
        if now < self.next_expiry_scan:
            return
        self.next_expiry_scan = now + EXPIRY_SCAN_SECONDS
        late = [c for c in self.reading if c.deadline <= now]
        for conn in late:
            reason = {Phase.IDLE: None, Phase.HEADERS: "header_timeout", Phase.BODY: "body_timeout"}[conn.phase]
            self._drop(conn, reason)

    def _pause(self, conn: BufferedConn) -> None:
        """Stop reading a body while the worker holds too much: the kernel's flow control slows the client."""
        if not conn.paused:
            self.poller.unregister(conn.sock)
            conn.paused = True
            self.paused += 1

    def _resume_paused(self) -> None:
        if not self.paused:
            return
        for conn in self.reading:
            if conn.paused and self.buffered - len(conn.buf) <= BUFFER_BUDGET:
                conn.paused = False
                self.paused -= 1
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    # ---- in a thread: a whole request, read from the buffer ------------------------------------------------

    def handle(self, conn: BufferedConn):
        """Serve the request the poller buffered. Runs in a thread; reads from the socket only past the buffer."""
        req = None
        try:
            conn.init()
            # Blocking, as in gthread. The kernel's timeouts set at accept are the safety net: a read past the
            # buffer (a body handed over to be refused) or a send to a client that does not read fails after
            # REQUEST_BODY_TIMEOUT. A Python-level timeout would do the same at the price of a poll() before every
            # send (measured: about 7 % more CPU per request at 1 row).
            conn.sock.setblocking(True)
            if conn.buf:
                conn.parser.unreader.unread(bytes(conn.buf))
                conn.buf = bytearray()
            req = next(conn.parser)
            if not req:
                return False
            return self._keepalive_after(conn, self.handle_request(req, conn))
        except http.errors.NoMoreData as e:
            self.log.debug("Ignored premature client disconnection. %s", e)
        except StopIteration as e:
            self.log.debug("Closing connection. %s", e)
        except (TimeoutError, BlockingIOError):  # a kernel timeout (SO_RCVTIMEO / SO_SNDTIMEO) ran out
            self.closed["read_timeout"]()
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as e:
            self.handle_error(req, conn.sock, conn.client, e)
        return False

    def handle_request(self, req, conn: BufferedConn):
        if conn.continue_sent:
            req._expected_100_continue = False  # the poller already answered it
        return super().handle_request(req, conn)

    def enqueue_req(self, conn: BufferedConn) -> None:
        if self.cfg.threads > 1:
            super().enqueue_req(conn)
            return
        # One thread: the poller serves the request itself. One made whole while another is served (pipelined)
        # waits in `ready`: a loop, not recursion, which a long pipeline would take past Python's limit.
        self.ready.append(conn)
        if len(self.ready) > 1:
            return
        while self.ready:
            current = self.ready[0]
            try:
                try:
                    keep = bool(self.handle(current))
                except Exception:
                    keep = False
                self._after_request(current, keep)
            finally:
                self.ready.popleft()

    def finish_request(self, conn: BufferedConn, fs) -> None:
        try:
            keep = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keep = False
        self._after_request(conn, keep)

    def _after_request(self, conn: BufferedConn, keep: bool) -> None:
        """Back on the poller's thread after a request: keep the connection for the next one, or close it."""
        if not keep:
            self.nr_conns -= 1
            conn.close(graceful=True)
            return
        try:
            # Bytes read past this request (a pipelined next one) go back to the poller like any others.
            ahead = conn.parser.unreader.take_buffered()
            self._watch(conn, ahead, idle=not ahead)
        except (OSError, ValueError):  # ValueError: the socket was closed (no file descriptor to poll)
            self._drop(conn, None)
            return
        if not self.alive and conn in self.reading and conn.phase == Phase.IDLE:
            conn.deadline = min(conn.deadline, time.monotonic() + STOP_LINGER)

    def handle_exit(self, sig, frame) -> None:
        self._leave_table()
        super().handle_exit(sig, frame)
