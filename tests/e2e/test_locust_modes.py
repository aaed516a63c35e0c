"""The user's `-u`, `-r` and `-t` decide the load in every locust mode; the built-in shapes run only when
`--load-profile` asks for one. Real locust processes against THE gunicorn command on 127.0.0.1."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness.exposition import samples
from harness.server import ROOT, free_port
from harness.stack import LOCUST, eventually
from loadtest.metrics import LOCUST_USERS, LOCUST_WORKERS

LOCUSTFILE = str(ROOT / "loadtest" / "locustfile.py")
# Well above the 5 s asked for plus locust's start (importing the locustfile) and stop; well under the 120 s
# of locust.conf and the shapes' default length, which is what a run that ignores -t would take.
LIMIT_SECONDS = 20


def _locust(server, out: Path, *args: str) -> list[str]:
    return [LOCUST, "-f", LOCUSTFILE, "--headless", "--host", server.app, "--csv", str(out), *args]


def _peak_users(out: Path) -> int:
    """The most users locust reported running (its stats history, written every second)."""
    with open(f"{out}_stats_history.csv") as f:
        return max(int(row["User Count"]) for row in csv.DictReader(f))


def _requests(out: Path) -> int:
    with open(f"{out}_stats.csv") as f:
        return next(int(row["Request Count"]) for row in csv.DictReader(f) if row["Name"] == "Aggregated")


def _timed(command: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - started, result


@pytest.mark.parametrize("mode", [[], ["--processes", "2"]], ids=["local", "processes"])
def test_users_spawn_rate_and_run_time_win(server, tmp_path, mode):
    out = tmp_path / "run"
    took, result = _timed(_locust(server, out, "-u", "2", "-r", "2", "-t", "5s", *mode), timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert took < LIMIT_SECONDS, (took, result.stderr[-3000:])
    assert _peak_users(out) == 2
    assert _requests(out) > 0
    assert "have no impact on LoadShapes" not in result.stderr


def test_master_and_worker_processes_obey_the_users_flags(server, tmp_path):
    out, port = tmp_path / "run", free_port()
    worker = subprocess.Popen(
        [LOCUST, "-f", LOCUSTFILE, "--worker", "--master-port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        master = [
            *_locust(server, out, "-u", "2", "-r", "2", "-t", "5s"),
            "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--expect-workers", "1",
        ]  # fmt: skip
        took, result = _timed(master, timeout=60)
    finally:
        # The master tells its workers to quit when it does; a worker still running after that is a leak.
        try:
            worker.wait(10)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
    assert worker.returncode == 0
    assert result.returncode == 0, result.stderr[-3000:]
    assert took < LIMIT_SECONDS, (took, result.stderr[-3000:])
    assert _peak_users(out) == 2


def test_a_load_profile_runs_only_when_asked_for_and_says_what_it_overrides(server, tmp_path):
    out = tmp_path / "run"
    command = _locust(
        server, out, "-u", "2", "-t", "60s", "--load-profile", "steady", "--peak-users", "3", "--profile-seconds", "4"
    )
    took, result = _timed(command, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert took < LIMIT_SECONDS, (took, result.stderr[-3000:])
    assert _peak_users(out) == 3
    assert "--load-profile steady sets users and duration: -u, -t ignored" in result.stderr


def test_a_crossed_threshold_is_logged_when_the_run_ends_and_sets_the_exit_code(server, tmp_path):
    passing = _timed(_locust(server, tmp_path / "ok", "-u", "2", "-r", "2", "-t", "3s"), timeout=60)[1]
    assert passing.returncode == 0 and "thresholds: within" in passing.stderr, passing.stderr[-3000:]
    # No answer comes back in under a microsecond: this p95 threshold is crossed by any run.
    failing = _timed(_locust(server, tmp_path / "p95", "-u", "2", "-r", "2", "-t", "3s", "--max-p95-ms", "0.001"), 60)[
        1
    ]
    assert failing.returncode == 1
    assert re.search(r"thresholds: p95 \d+ ms is above --max-p95-ms 0", failing.stderr), failing.stderr[-3000:]


def test_make_demos_locust_runs_as_a_master_and_workers_with_its_metrics_on_the_locust_port(server, tmp_path):
    from offcluster.config import Ports
    from offcluster.demo import locust_command, locust_workers
    from offcluster.stack import Stack

    stack = Stack(tmp_path / "state", Ports(locust=free_port()), scrape_interval="1s", with_grafana=False)
    stack.write_config()
    workers = locust_workers(stack)
    assert workers >= 1
    started = time.monotonic()
    process = subprocess.Popen(
        locust_command(stack, server.app, 4, "report"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:

        def serving() -> dict:
            assert process.poll() is None, "locust exited before its run"
            try:
                scraped = samples(requests.get(f"{stack.urls['locust']}/metrics", timeout=2).text)
            except requests.ConnectionError as exc:
                raise AssertionError("the master's web UI is not up yet") from exc
            assert scraped[(LOCUST_USERS, ())] > 0
            return scraped

        scraped = eventually(serving, timeout=30)
        assert scraped[(LOCUST_WORKERS, ())] == workers
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    assert process.returncode == 0, stderr[-3000:]
    assert time.monotonic() - started < LIMIT_SECONDS + 10
    assert (stack.state / "locust" / "report.html").exists()
