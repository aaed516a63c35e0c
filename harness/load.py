"""Closed-loop load on POST /predict over real sockets, every outcome counted.

Clients open a fresh connection per request (no keep-alive connection outlives the worker it was bound to),
so a failure can be classified exactly: refused (nobody
listening), reset/disconnected before any response (accepted by the kernel, never answered), or a response
with a status.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

# One wine row in the order of the training features: the sample every test and benchmark sends.
ROW = [13.2, 2.77, 2.51, 18.5, 96, 1.48, 0.6, 0.42, 1.9, 7.8, 0.78, 1.55, 600]
BODY = json.dumps({"instances": [ROW]}).encode()


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def classify(exc: BaseException) -> str:
    """A stable name for why a request got no (complete) HTTP response."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    # RemoteDisconnected is a ConnectionResetError: both mean the connection closed before any response.
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "reset"
    if isinstance(exc, http.client.IncompleteRead):
        return "cut"  # the status line and headers arrived, the body did not
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    return f"other:{type(exc).__name__}"


def post_once(address: tuple[str, int], body: bytes = BODY, timeout: float = 10.0) -> int:
    """One POST /predict on a new connection; returns the status or raises what the socket raised."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@dataclass
class Load:
    """`threads` closed-loop clients sending POST /predict until stopped; counts every outcome."""

    app: str
    threads: int = 4
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    # (monotonic time, outcome) of every request, for "what happened after t" questions.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    stop_on_refused: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        address = host_port(self.app)
        while not self._stop.is_set():
            try:
                outcome = str(post_once(address))
            except Exception as exc:  # every exception is an outcome to count, not a test error
                outcome = classify(exc)
            with self._lock:
                if outcome.isdigit():
                    self.statuses[int(outcome)] += 1
                else:
                    self.failures[outcome] += 1
                self.timeline.append((time.monotonic(), outcome))
            if outcome == "refused":
                if self.stop_on_refused:
                    return
                time.sleep(0.01)

    def start(self) -> Load:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._workers), "a load thread did not finish"

    @property
    def ok(self) -> int:
        return self.statuses[200]
