"""The master's liveness answer (app/liveness.py, app/exposition.py) over gunicorn's own heartbeat files."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.workers.workertmp import WorkerTmp

from app.exposition import master_app
from app.liveness import NO_WORKER_HEARTBEAT, NO_WORKERS, arbiter_liveness

TIMEOUT = 30


@pytest.fixture()
def heartbeat():
    tmps: list[WorkerTmp] = []

    def make(seconds_ago: float | None) -> SimpleNamespace:
        """A worker as the arbiter holds it: its heartbeat file, beaten `seconds_ago` (None: never beaten)."""
        tmp = WorkerTmp(Config())
        tmps.append(tmp)
        if seconds_ago is not None:
            beat = time.monotonic() - seconds_ago
            os.utime(tmp.fileno(), (beat, beat))  # what WorkerTmp.notify writes, back-dated
        return SimpleNamespace(tmp=tmp)

    yield make
    for tmp in tmps:
        tmp.close()


def _arbiter(*workers, timeout=TIMEOUT) -> SimpleNamespace:
    return SimpleNamespace(WORKERS={i: w for i, w in enumerate(workers)}, timeout=timeout)


def test_live_while_one_worker_beats(heartbeat):
    assert arbiter_liveness(_arbiter(heartbeat(TIMEOUT + 5), heartbeat(1))) is None


def test_a_worker_just_started_counts_as_beating(heartbeat):
    # The file's creation time is wall-clock, far ahead of the monotonic clock: the arbiter reads it as fresh.
    assert arbiter_liveness(_arbiter(heartbeat(None))) is None


def test_not_live_when_every_heartbeat_is_older_than_the_timeout(heartbeat):
    assert arbiter_liveness(_arbiter(heartbeat(TIMEOUT + 1), heartbeat(TIMEOUT + 5))) == NO_WORKER_HEARTBEAT


def test_not_live_without_workers():
    assert arbiter_liveness(_arbiter()) == NO_WORKERS


def test_a_reaped_worker_is_skipped(heartbeat):
    reaped = heartbeat(1)
    reaped.tmp.close()
    assert arbiter_liveness(_arbiter(reaped)) == NO_WORKER_HEARTBEAT
    assert arbiter_liveness(_arbiter(reaped, heartbeat(1))) is None


@pytest.mark.parametrize(("reason", "status"), [(None, "200 OK"), (NO_WORKER_HEARTBEAT, "503 Service Unavailable")])
def test_healthz_on_the_metrics_port_answers_from_the_check(reason, status):
    seen = {}

    def start_response(code, headers):
        seen.update(status=code, headers=dict(headers))

    body = json.loads(b"".join(master_app(lambda: reason)({"PATH_INFO": "/healthz"}, start_response)))
    assert seen["status"] == status
    assert seen["headers"]["Content-Type"] == "application/json"
    assert body == ({"status": "ok"} if reason is None else {"error": reason, "detail": "the master is not serving"})
