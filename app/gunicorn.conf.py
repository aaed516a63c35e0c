"""gunicorn settings for the model service: ``gunicorn -c app/gunicorn.conf.py app.wsgi:app``.

gunicorn reads this file in the master before it imports the app (``preload_app``), so this is the one
place where the environment can still be fixed up for prometheus_client and the BLAS libraries.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

# One BLAS thread per worker: the workers are the parallelism, and oversubscribed BLAS threads fight them.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# prometheus_client reads this when first imported: it must be set before the app is. It is wiped here,
# when the config is read, because preload imports the app BEFORE the on_starting hook would run. On a memory
# filesystem, as the pod's emptyDir: every metric update writes to these files. See docs/metrics.md.
_multiproc = Path(
    os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    or tempfile.mkdtemp(prefix="prometheus-multiproc-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
)
_multiproc.mkdir(parents=True, exist_ok=True)
# gunicorn reads this file again on SIGHUP, in the same master, while its workers and the files holding the
# model gauges and the dead workers' counts live on: only a new master wipes. The mark is the master's pid
# in its own environment, not a file in the directory: the emptyDir outlives a container restart, and the new
# container's master may get the same pid (1) again. A new master's counters start from zero, which
# Prometheus reads as the process restart it is. `GUNICORN_PID` is set in a master re-executed by SIGUSR2,
# whose parent still serves from the same files. docs/reliability.md, "Reloads and restarts".
_MASTER_MARK = "PROMETHEUS_MULTIPROC_DIR_MASTER"
if os.environ.get(_MASTER_MARK) != str(os.getpid()) and "GUNICORN_PID" not in os.environ:
    for _stale in _multiproc.glob("*.db"):
        _stale.unlink()
os.environ[_MASTER_MARK] = str(os.getpid())
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_multiproc)


def _allowed_cpus() -> int:
    """CPUs this process may use: the cgroup quota if one is set, else its affinity mask."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cpus


bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or _allowed_cpus())
# One thread per worker, serving on the worker's poller thread. The worker (app/worker.py, docs/reliability.md)
# is gthread with three changes: requests are read whole by its poller before anything runs them, so no slow
# or stalled client holds the worker; each worker accepts only while it holds no more connections than the
# least-loaded one, so kept-alive connections spread evenly; and with one thread the poller runs each whole
# request itself, with no hand-off to a pool and back. Idle connections still wait in the poller (keep-alive).
# Measured with `python -m benchmarks.peers` (docs/benchmarks.md, "Levers"): against 4 threads, 1.13-1.17x the
# requests/s at 1 and 256 rows, and a p99 under KServe's at 4 and 16 connections, which 4 threads did not reach.
worker_class = "app.worker.BufferingWorker"
threads = 1  # GUNICORN_CMD_ARGS="--threads 4" gives the pool back (a hand-off per request)
preload_app = True
# gthread beats its heartbeat from the worker's main loop: a worker that stops serving is killed after this, a
# single slow request is not.
timeout = 30
graceful_timeout = 30
keepalive = 5
# A worker's poller thread and its request threads share one GIL: a thread waiting for it (the poller woken by
# the next request, or a second request) gets it when the running one blocks, or after this interval, which can
# add up to that much to a request's latency. Python's default, 5 ms, is kept: 1 and 0.5 ms cost 1.15x the
# server CPU per request at 256 rows under load, and no better tail when quiet (docs/benchmarks.md). Inherited by
# the forked workers.
sys.setswitchinterval(float(os.environ.get("SWITCH_INTERVAL_MS", "5")) / 1000)
max_requests = int(os.environ.get("MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "0"))
# Heartbeat files on tmpfs: a disk-backed /tmp can stall workers long enough to be killed as hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# The same line, without gunicorn copying every header and environ entry per request to format five fields.
logger_class = "app.access_log.AccessLogger"
# gunicorn 27 opens a control socket under $HOME by default; a read-only root filesystem has no place for it.
control_socket_disable = True

# The app is preloaded right after this file is read: its log lines (model loaded, or why not) need a handler.
logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

METRICS_HOST = os.environ.get("METRICS_HOST", "0.0.0.0")
METRICS_PORT = int(os.environ.get("METRICS_PORT", "9100"))


def when_ready(server):
    import gc
    from functools import partial

    from app.exposition import master_app
    from app.liveness import arbiter_liveness
    from app.metrics_server import start_metrics_server

    # Objects made by the preload (model, Flask, numpy) move to a permanent generation before the first fork:
    # workers then neither copy their pages on write when the collector scans them nor walk them again at
    # exit, which made each recycled worker spend ~0.3 s of CPU dying.
    gc.freeze()

    # The liveness probe asks the master, on this port, whether its workers beat: docs/reliability.md.
    app = master_app(partial(arbiter_liveness, server))
    server.metrics_server = start_metrics_server(METRICS_HOST, METRICS_PORT, app)
    server.log.info(
        "metrics for all workers at http://%s:%d/metrics, liveness at /healthz (served by the master)",
        METRICS_HOST,
        METRICS_PORT,
    )


def child_exit(server, worker):
    from app.exposition import fold_dead_worker

    # Drops the dead worker's live gauges (in-flight) and folds its counters into the archive files.
    fold_dead_worker(worker.pid)


def on_exit(server):
    metrics_server = getattr(server, "metrics_server", None)
    if metrics_server is not None:
        metrics_server.shutdown()
