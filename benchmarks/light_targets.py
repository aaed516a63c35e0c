"""Light targets: pods that only serve /metrics, the exposition a real pod recorded, its cumulative series
growing as a busy pod's would. They let one machine stand in for many pods at Prometheus's end.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CUMULATIVE = {"counter", "histogram", "summary"}


# -- light targets ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    head: str  # the sample's name and labels, as exposed
    value: float
    cumulative: bool


def parse_exposition(text: str) -> tuple[list[str], list[Line]]:
    """Comment lines and samples of a text exposition; a sample is cumulative when its family is a counter,
    histogram or summary (by the family's `# TYPE`)."""
    types: dict[str, str] = {}
    comments: list[str] = []
    lines: list[Line] = []
    for raw in text.splitlines():
        if not raw:
            continue
        if raw.startswith("#"):
            comments.append(raw)
            parts = raw.split(" ", 3)
            if parts[1] == "TYPE":
                types[parts[2]] = parts[3]
            continue
        head, value = raw.rsplit(" ", 1)
        name = head.split("{", 1)[0]
        bases = (name.removesuffix(suffix) for suffix in ("_total", "_bucket", "_count", "_sum", ""))
        family = next((base for base in bases if base in types), name)
        lines.append(Line(head, float(value), types.get(family) in CUMULATIVE))
    return comments, lines


class LightTarget:
    """One pod's worth of /metrics: the recorded exposition, cumulative series grown by `growth` per second
    relative to their recorded value (a zero stays zero, as a bin nobody hits does)."""

    def __init__(self, comments: list[str], lines: list[Line], growth: float) -> None:
        self.comments = "\n".join(comments) + "\n"
        self.lines = lines
        self.growth = growth
        self.started = time.monotonic()

    def body(self) -> bytes:
        factor = 1.0 + self.growth * (time.monotonic() - self.started)
        samples = (f"{line.head} {line.value * factor if line.cumulative else line.value:.10g}" for line in self.lines)
        return (self.comments + "\n".join(samples) + "\n").encode()


@contextmanager
def light_targets(text: str, count: int) -> Iterator[list[int]]:
    """`count` light targets on free 127.0.0.1 ports; yields their ports."""
    comments, lines = parse_exposition(text)
    servers = []

    for i in range(count):
        target = LightTarget(comments, lines, growth=0.002 * (1 + i % 7))

        class Handler(http.server.BaseHTTPRequestHandler):
            source = target

            def do_GET(self) -> None:
                body = self.source.body()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
