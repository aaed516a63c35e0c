"""Request metrics as Flask hooks: count, latency and in-flight for every request a worker answers."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request

from app import metrics


def _route() -> str:
    # The URL rule template, never the raw path: random URLs all land on one series.
    rule = request.url_rule
    return rule.rule if rule is not None else metrics.UNMATCHED_ROUTE


def instrument(app: Flask) -> None:
    # Children resolved once per (method, route[, status]): labels() costs more than the inc itself. Both
    # key sets are bounded by the code (methods, URL rules, status codes), so the caches are too.
    durations: dict[tuple[str, str], Any] = {}
    counts: dict[tuple[str, str, int], Any] = {}

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()
        metrics.http_in_flight.inc()

    @app.after_request
    def _record(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            method = metrics.method_label(request.method)
            route = _route()
            status = response.status_code
            duration = durations.get((method, route))
            if duration is None:
                duration = durations[(method, route)] = metrics.http_request_duration.labels(method, route)
            count = counts.get((method, route, status))
            if count is None:
                count = counts[(method, route, status)] = metrics.http_requests.labels(method, route, str(status))
            duration.observe(time.perf_counter() - started)
            count.inc()
            metrics.http_in_flight.dec()
        return response

    @app.teardown_request
    def _finish(_exc: BaseException | None) -> None:
        # Reached without after_request only if the response itself failed: keep in-flight honest.
        if g.pop("metrics_started", None) is not None:
            metrics.http_in_flight.dec()
