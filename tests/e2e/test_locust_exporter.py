"""The locust master's /metrics: what it exports equals what locust itself counted, with its workers as real
processes against THE gunicorn command; workers serve nothing."""

from __future__ import annotations

import subprocess
import time

import requests

from harness.exposition import samples
from harness.locust import start_distributed
from harness.stack import eventually
from loadtest.metrics import (
    LOCUST_FAILURES_TOTAL,
    LOCUST_REQUESTS_TOTAL,
    LOCUST_RESPONSE_TIME_SECONDS,
    LOCUST_USERS,
    LOCUST_WORKERS,
    QUANTILES,
)

SUMMARY = {LOCUST_RESPONSE_TIME_SECONDS + suffix for suffix in ("", "_count", "_sum")}
EXPORTED = {LOCUST_REQUESTS_TOTAL, LOCUST_FAILURES_TOTAL, LOCUST_USERS, LOCUST_WORKERS, *SUMMARY}
# locust.runners.WORKER_REPORT_INTERVAL (importing locust here would monkey-patch the test process with gevent).
WORKER_REPORT_INTERVAL = 3.0


def _by_request(scraped: dict, name: str) -> dict[tuple[str, str], float]:
    return {
        (labels["name"], labels["method"]): value
        for (sample, pairs), value in scraped.items()
        if sample == name
        for labels in [dict(pairs)]
    }


def test_the_masters_metrics_equal_locusts_own_counts(server, tmp_path, promtool):
    run = start_distributed(server.app, tmp_path / "run", 2, "-u", "4", "-r", "4", "-t", "6s", "--autoquit", "10")
    try:
        # During the run: users and workers as the master sees them, percentiles once requests have come in.
        def during() -> dict:
            scraped = samples(requests.get(run.metrics, timeout=5).text)
            assert scraped[(LOCUST_USERS, ())] == 4
            # Every name of loadtest/metrics.py is exported (percentiles once the workers' first reports are in),
            # and nothing else.
            assert {name for name, _ in scraped} == EXPORTED
            return scraped

        scraped = eventually(during, timeout=20)
        assert scraped[(LOCUST_WORKERS, ())] == 2
        quantiles = {dict(k[1])["quantile"] for k in scraped if k[0] == LOCUST_RESPONSE_TIME_SECONDS}
        # After the run (users back to 0) and the workers' next report (they report every
        # WORKER_REPORT_INTERVAL, not when a run stops), before --autoquit: the master's final numbers.
        eventually(lambda: _after(run), timeout=20)
        time.sleep(WORKER_REPORT_INTERVAL + 1)
        exposition = requests.get(run.metrics, timeout=5).text
        final = samples(exposition)
    finally:
        code = run.wait(60)
    assert code == 0
    lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert quantiles <= {str(q) for q in QUANTILES}
    counted = run.stats()
    assert _by_request(final, LOCUST_REQUESTS_TOTAL) == {k: v[0] for k, v in counted.items()}
    assert _by_request(final, LOCUST_FAILURES_TOTAL) == {k: v[1] for k, v in counted.items()}
    assert _by_request(final, LOCUST_RESPONSE_TIME_SECONDS + "_count") == {k: v[0] for k, v in counted.items()}
    assert sum(v[0] for v in counted.values()) > 20
    # Label values are the locustfile's request names, nothing else.
    assert {name for name, _ in counted} <= {"/predict", "/predict [invalid]", "/feedback", "/model"}


def _after(run) -> dict:
    scraped = samples(requests.get(run.metrics, timeout=5).text)
    assert scraped[(LOCUST_USERS, ())] == 0
    return scraped
