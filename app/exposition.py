"""`/metrics` served by the gunicorn master, merged from every worker's multiprocess files, and the master's
liveness answer beside it (the server itself: app/metrics_server.py).

Workers never serve it: a scrape must not queue behind predictions when every worker is busy, and the
app port does not expose metrics to clients. The whole multiprocess design, its deviations and limits:
docs/metrics.md.
"""

from __future__ import annotations

import glob
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.metrics import metrics_port_closed

METRICS_PATH = "/metrics"
LIVENESS_PATH = "/healthz"
ARCHIVE = "archive"

# Held while a scrape reads the files and while a dead worker's files are folded into the archive, so
# no scrape ever sees a worker's counts twice or not at all (which would look like a counter reset).
_files_lock = threading.Lock()


def _fold(dead: Path, archive: Path, combine) -> None:
    if dead.stat().st_size == 0:  # created, never sized: the worker died inside MmapedDict.__init__
        dead.unlink()
        return
    into = MmapedDict(str(archive))
    try:
        for key, value, timestamp, _pos in MmapedDict.read_all_values_from_file(str(dead)):
            current, _ts = into.read_value(key)
            into.write_value(key, combine(current, value), timestamp)
    finally:
        into.close()
    dead.unlink()


def fold_dead_worker(pid: int, directory: str | None = None) -> None:
    """Fold a dead worker's files into one archive per type, then delete them.

    prometheus_client leaves a dead worker's counter and histogram files in place forever (counters must
    not go back), so with recycled workers the directory, and the time of every scrape, grows without bound.
    Adding their values into `counter_archive.db` / `histogram_archive.db` keeps every total exact and the
    file count at (live workers + archives). Gauges in `max`/`min` mode fold by max/min; other gauge modes
    of a dead process carry nothing worth keeping.
    """
    path = Path(directory or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    with _files_lock:
        mark_process_dead(pid, str(path))
        for typ in ("counter", "histogram", "summary"):
            dead = path / f"{typ}_{pid}.db"
            if dead.exists():
                _fold(dead, path / f"{typ}_{ARCHIVE}.db", lambda a, b: a + b)
        for mode, combine in (("max", max), ("min", min)):
            dead = path / f"gauge_{mode}_{pid}.db"
            if dead.exists():
                _fold(dead, path / f"gauge_{mode}_{ARCHIVE}.db", combine)
        for leftover in path.glob(f"gauge_*_{pid}.db"):
            leftover.unlink()


class _SizedFilesCollector(MultiProcessCollector):
    """Skips 0-byte files (client_python#1199): nothing recorded yet, and a file never shrinks back to 0."""

    def collect(self):
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if os.path.getsize(f)]
        return self.merge(files, accumulate=True)


# Highest value exposed so far per counter/histogram sample: regrouping float sums in a fold can move a `_sum`
# down by an ulp, which Prometheus would read as a reset. Exposing the high-water mark hides only that.
_exposed: dict[tuple, float] = {}


class _MonotonicCollector:
    def __init__(self, inner) -> None:
        self._inner = inner

    def collect(self):
        for metric in self._inner.collect():
            if metric.type in ("counter", "histogram"):
                samples = []
                for sample in metric.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    value = max(sample.value, _exposed.get(key, sample.value))
                    _exposed[key] = value
                    samples.append(sample._replace(value=value))
                metric.samples = samples
            yield metric


def metrics_app(environ, start_response):
    if environ.get("PATH_INFO") != METRICS_PATH:
        return _not_found(start_response)
    # A fresh registry per scrape: the collector reads the files as they are now, including new workers'.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MonotonicCollector(_SizedFilesCollector(None)))
    registry.register(metrics_port_closed)
    with _files_lock:
        return make_wsgi_app(registry)(environ, start_response)


def _not_found(start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"metrics are served at /metrics\n"]


def master_app(liveness: Callable[[], str | None]):
    """The metrics port's WSGI app: `/metrics`, and `/healthz` answering from `liveness`, which returns None
    when the master is live and else a reason from a fixed set (app/liveness.py)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != LIVENESS_PATH:
            return metrics_app(environ, start_response)
        reason = liveness()
        if reason is None:
            status, body = "200 OK", {"status": "ok"}
        else:
            status, body = "503 Service Unavailable", {"error": reason, "detail": "the master is not serving"}
        start_response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return [json.dumps(body).encode()]

    return app
