"""Request metrics at the WSGI boundary: count, latency and in-flight for every request a worker answers.

The count is written at once, exact at every scrape. Latencies are summed in the worker and the in-flight
count kept in a plain number, both written every second by the worker's flusher thread (``app.pending``): the
latency histogram reaches /metrics up to a second after the request count, and the in-flight gauge is the
count as of the last second. See docs/metrics.md.

One wrapper around Flask's WSGI app rather than before/after/teardown hooks: it sees every request,
error responses included, and costs one call instead of three hooks and the context-local lookups they
need. The route label is read from the URL rule Flask matched, while the request context is still open
(Flask calls `start_response` before it pops the context).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from app import metrics
from app.pending import FLUSHER, PendingHistogram


class _RequestMetrics:
    def __init__(self, wsgi_app: Callable) -> None:
        self.wsgi_app = wsgi_app
        # Children resolved once per (method, route[, status]): labels() costs more than the inc itself. The
        # keys are bounded by the code (methods, URL rules, status codes), so the caches are too.
        self._durations: dict[tuple[str, str], Any] = {}
        self._counts: dict[tuple[str, str, str], Any] = {}
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        FLUSHER.register(self._write_in_flight)

    def _write_in_flight(self) -> None:
        metrics.http_in_flight.set(self._in_flight)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = metrics.method_label(environ.get("REQUEST_METHOD", ""))

        def recording_start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            rule = request.url_rule
            # The URL rule template, never the raw path: random URLs all land on one series.
            route = rule.rule if rule is not None else metrics.UNMATCHED_ROUTE
            code = status[:3]
            duration = self._durations.get((method, route))
            if duration is None:
                child = metrics.http_request_duration.labels(method, route)
                duration = self._durations[(method, route)] = PendingHistogram(child)
            count = self._counts.get((method, route, code))
            if count is None:
                count = self._counts[(method, route, code)] = metrics.http_requests.labels(method, route, code)
            duration.observe(time.perf_counter() - started)
            count.inc()
            return start_response(status, headers, exc_info)

        with self._in_flight_lock:
            self._in_flight += 1
        FLUSHER.ensure_running()
        try:
            return self.wsgi_app(environ, recording_start_response)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1


def instrument(app: Flask) -> None:
    app.wsgi_app = _RequestMetrics(app.wsgi_app)  # type: ignore[method-assign]
