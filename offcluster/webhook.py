"""A webhook receiver standing in for the real receivers: appends every Alertmanager notification to a file.

    python -m offcluster.webhook --port 9095 --out .state/alerts.jsonl

Each line is `{"receiver": <path>, "payload": <Alertmanager's JSON>}`; the path says which receiver the
route chose.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1024 * 1024


def serve(host: str, port: int, out: Path) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
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

        def _reply(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):  # the file is the log
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    serve(args.host, args.port, args.out).serve_forever()


if __name__ == "__main__":
    main()
