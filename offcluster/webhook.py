"""A webhook receiver standing in for the real receivers: appends every Alertmanager notification to a file.

    python -m offcluster.webhook [--port PORT] --out .state/alerts.jsonl

Each line is `{"receiver": <path>, "payload": <Alertmanager's JSON>}`; the path says which receiver the
route chose. `GET /runbooks` answers docs/runbooks.md as HTML, each heading with the anchor GitHub gives it:
the page every alert's `runbook_url` opens by default (alerts/links.py).
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from declarations import ports
from declarations.paths import RUNBOOKS
from offcluster.runbooks import html

MAX_BODY = 1024 * 1024


def serve(host: str, port: int, out: Path) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/runbooks":
                # Read on every request, so an edited runbook shows without a restart.
                self._reply(200, html(RUNBOOKS.read_text()).encode(), "text/html; charset=utf-8")
                return
            self._reply(200 if self.path == "/healthz" else 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413)
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError:
                self._reply(400)
                return
            line = json.dumps({"receiver": self.path.strip("/"), "payload": payload})
            with lock, out.open("a") as f:
                f.write(line + "\n")
            self._reply(200)

        def _reply(self, status: int, body: bytes = b"", content_type: str = "") -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # the file is the log
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=ports.WEBHOOK)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    serve(args.host, args.port, args.out).serve_forever()


if __name__ == "__main__":
    main()
