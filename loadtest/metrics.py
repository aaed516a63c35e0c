"""The names of the metrics the locust master exports (loadtest/exporter.py), declared in one place.

The dashboard's "Load test" row imports them from here, and tests/dashboard checks that every name a panel
uses is exported. Label values come from the locustfile only: `name` is the request name each task passes to
locust (a fixed set: /predict, /predict [invalid], /feedback, /model), `method` its HTTP method, `quantile` one
of QUANTILES. Nothing from a response ever becomes a label (locust's error messages are not exported).

docs/metrics.md ("The load test's metrics") says what each one means.
"""

from __future__ import annotations

# Counters, as locust counts them since the run started (a new run starts them again from 0, which
# Prometheus's rate() reads as a counter reset).
LOCUST_REQUESTS_TOTAL = "locust_requests_total"
LOCUST_FAILURES_TOTAL = "locust_failures_total"
# A summary: response-time percentiles over locust's sliding window (the last 10 s), one series per QUANTILES,
# with `_count` and `_sum` since the run started.
LOCUST_RESPONSE_TIME_SECONDS = "locust_response_time_seconds"
QUANTILES = (0.5, 0.95, 0.99)
# Gauges: users running now (over all workers) and, on a master, the workers connected.
LOCUST_USERS = "locust_users"
LOCUST_WORKERS = "locust_workers"

# The request names of the locustfile that the app answers on a route of the same name (the invalid ones go
# to /predict too): the dashboard compares them with the app's own numbers for that route.
ROUTE_OF_NAME = {"/predict": "/predict", "/predict [invalid]": "/predict", "/feedback": "/feedback"}
