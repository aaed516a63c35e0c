"""The ScaledObject's query, asked of the local stack's real Prometheus while locust drives the app at two load
levels: one number, which follows the load, and the replica counts KEDA's HPA would choose from it.

Scrapes run at the ServiceMonitor's own interval (not compressed), and each level lasts longer than the query's
rate window, so the value read near the end of a level is that level's alone. The CPU trigger's share is
estimated from the pods' own CPU time (the gunicorn masters and their workers) over the same window, against
the container's CPU request, as the HPA's Utilization target reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from declarations.autoscaling import desired_replicas, prometheus_triggers, replica_bounds
from declarations.manifests import one, render
from harness.pod_runtime import quantity
from harness.processes import report
from harness.server import ROOT, free_port, free_port_run
from harness.stack import query, run_locust
from offcluster.autoscaling import group_cpu_seconds
from offcluster.config import Ports
from offcluster.stack import Stack

# locust users: ~4 requests/s each (the locustfile's wait time), so 1 and 4 users differ fourfold.
# AUTOSCALING_USERS=4,100 measures heavier levels (docs/scale.md, "Autoscaling with KEDA").
LEVELS = tuple(int(u) for u in os.environ.get("AUTOSCALING_USERS", "1,4").split(","))
# Longer than the query's 1-minute window plus locust's start, so the read at the end sees one level only.
LEVEL_SECONDS = 75
READ_BEFORE_END = 5
# Ports the make targets take from the environment (Makefile), as `make status` passes them on.
PORT_NAMES = ("app", "metrics", "prometheus", "alertmanager", "webhook", "grafana")
# Request names locust gives the calls that reach /predict (valid and refused alike: both are load).
PREDICT_NAMES = ("/predict", "/predict [invalid]")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = Ports(
        app=free_port(), metrics=free_port_run(4), prometheus=free_port(), alertmanager=free_port(),
        webhook=free_port(), grafana=free_port(),
    )  # fmt: skip
    running = Stack(tmp_path_factory.mktemp("stack"), ports, evaluation_interval="1s")
    running.up(timeout=90)
    yield running
    running.down()


def _pods(stack: Stack) -> dict[str, int]:
    """pod name -> process group (the pod's gunicorn master and its workers)."""
    running = stack.running()
    return {pod.name: running[pod.name] for pod in stack.pods}


def _pods_cpu(stack: Stack) -> float:
    return sum(map(group_cpu_seconds, _pods(stack).values()))


def _status(stack: Stack) -> list[str]:
    """`python -m offcluster status` (what `make status` runs) pointed at this stack."""
    ports = stack.ports
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STATE_DIR": str(stack.state),
        **{f"{name.upper()}_PORT": str(getattr(ports, name)) for name in PORT_NAMES},
    }
    done = subprocess.run(
        [sys.executable, "-m", "offcluster", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_the_scaling_query_follows_the_load(stack: Stack, tmp_path: Path) -> None:
    objects = render()
    scaled, deployment = one(objects, "ScaledObject"), one(objects, "Deployment")
    (trigger,) = prometheus_triggers(scaled)
    (cpu_trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "cpu"]
    bounds = replica_bounds(scaled)
    request_cores = quantity(deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    cpu_per_pod = request_cores * int(cpu_trigger["metadata"]["value"]) / 100

    measured = {}
    for users in LEVELS:
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            # Latency is not under test here: a loaded machine may push p95 past locust.conf's threshold.
            run = pool.submit(
                run_locust, stack, tmp_path / f"users{users}", LEVEL_SECONDS, "--max-p95-ms", "60000", users=users
            )
            # The CPU window matches the query's: the last minute before the read.
            time.sleep(LEVEL_SECONDS - READ_BEFORE_END - 60)
            cpu_before, cpu_started = _pods_cpu(stack), time.monotonic()
            time.sleep(started + LEVEL_SECONDS - READ_BEFORE_END - time.monotonic())
            result = query(stack, trigger.query)
            cores = (_pods_cpu(stack) - cpu_before) / (time.monotonic() - cpu_started)
            # What `make status` prints at the same moment, from the same query and the pods' processes.
            status = _status(stack)
            counts = run.result()
        assert len(result) == 1, f"{trigger.query} -> {result}: KEDA needs one number"
        value = float(result[0]["value"][1])
        sent = sum(counts.get(name, 0) for name in PREDICT_NAMES) / LEVEL_SECONDS
        measured[users] = (value, sent, cores)
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        report(
            f"autoscaling, {users} locust users",
            query_value=f"{value:.2f} req/s",
            locust_predict_rate=f"{sent:.2f} req/s",
            pods_cpu=f"{cores * 1000:.0f}m over {len(stack.pods)} pods",
            cpu_per_request=f"{cores / value * 1000:.2f} ms" if value else "n/a",
            replicas_from_rate=desired_replicas(value, trigger.threshold, bounds),
            replicas_from_cpu=desired_replicas(cores, cpu_per_pod, bounds),
            loadavg=" ".join(load),
        )
        print("\n".join(status))
        (rate_line,) = [line for line in status if "request rate:" in line]
        status_value = float(rate_line.split("request rate: ")[1].split()[0])
        assert 0.8 * value <= status_value <= 1.25 * value + 0.5, (status, value)
        assert any("CPU:" in line for line in status), status
        # The query counts what the app answered; locust counts what it sent over its whole run.
        assert 0.6 * sent <= value <= 1.4 * sent, (users, value, sent)

    (low_value, _, _), (high_value, _, _) = measured[LEVELS[0]], measured[LEVELS[-1]]
    assert high_value > 2 * low_value, measured
    assert LEVELS[-1] >= 2 * LEVELS[0], "levels too close for the comparison above"
