"""`/metrics` served by the gunicorn master, merged from every worker's multiprocess files, and the master's
liveness answer beside it (the server itself: app/metrics_server.py).

Workers never serve it: a scrape must not queue behind predictions when every worker is busy, and the
app port does not expose metrics to clients. The whole multiprocess design, its deviations and limits:
docs/metrics.md.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import mark_process_dead

from app.merged_exposition import MergedFiles
from app.metrics import metrics_port_closed

METRICS_PATH = "/metrics"
LIVENESS_PATH = "/healthz"
ARCHIVE = "archive"
# zlib's fastest level: on a 73 KB exposition (500-feature model) 0.13 ms of CPU against 2.0 ms at level 9, for
# 7.6 KB sent instead of 6.2 KB (benchmarks.exposition's pod, measured once, quiet).
GZIP_LEVEL = 1

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


_merged: dict[str, MergedFiles] = {}
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def exposition(directory: str) -> bytes:
    """Every worker's series, merged, and the master's own counter (the text format, 0.0.4)."""
    merged = _merged.get(directory)
    if merged is None:
        merged = _merged[directory] = MergedFiles(directory)
    with _files_lock:
        files = merged.render(os.listdir(directory))
    return files.encode() + generate_latest(_master_registry)


_master_registry = CollectorRegistry(auto_describe=False)
_master_registry.register(metrics_port_closed)


def metrics_app(environ, start_response):
    if environ.get("PATH_INFO") != METRICS_PATH:
        return _not_found(start_response)
    # Read at every scrape: the files as they are now, including new workers'. OpenMetrics would add nothing
    # here (multiprocess mode has no exemplars and no _created series): the text format, whatever is accepted.
    body = exposition(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    headers = [("Content-Type", TEXT_FORMAT)]
    if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers.append(("Content-Encoding", "gzip"))
    start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
    return [body]


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
