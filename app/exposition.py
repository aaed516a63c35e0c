"""`/metrics` served by the gunicorn master, merged from every worker's multiprocess files.

Workers never serve it: a scrape must not queue behind predictions when every worker is busy, and the
app port does not expose metrics to clients.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector

METRICS_PATH = "/metrics"


def metrics_app(environ, start_response):
    if environ.get("PATH_INFO") != METRICS_PATH:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"metrics are served at /metrics\n"]
    # A fresh registry per scrape: the collector reads the files as they are now, including new workers'.
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)
    return make_wsgi_app(registry)(environ, start_response)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every few seconds would drown the access log
        pass


def start_metrics_server(host: str, port: int) -> WSGIServer:
    server = make_server(host, port, metrics_app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server
