"""The master's metrics port, measured against wsgiref's threaded server it replaced, in one run.

    python -m benchmarks.metrics_port [--rounds 20] [--scrapes 25] [--stalled 60] [--burst 300] [--burst-rounds 3]

Starts THE gunicorn command twice: as it is (app/metrics_server.py) and with `when_ready` serving the same
WSGI app from wsgiref's `ThreadingMixIn` server (one thread per connection, no deadline, backlog 5). Then,
alternating the two round by round: the wall time of a scrape and the master's CPU per scrape (from
/proc/<pid>/stat, over `--scrapes` scrapes a round); a scrape's wall time and the master's thread count with
`--stalled` connections stalled mid-headers; in the first `--burst-rounds` rounds (wsgiref's takes tens of
seconds each), the time to open `--burst` connections and then scrape. Prints
medians and new/old ratios, with /proc/loadavg before and after.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import requests

from harness.load import host_port
from harness.server import ROOT, Server, start_server

WSGIREF_WHEN_READY = """
exec(open({conf!r}).read())


def when_ready(server):
    import threading
    from functools import partial
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from app.exposition import master_app
    from app.liveness import arbiter_liveness

    class Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        allow_reuse_address = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):
            pass

    app = master_app(partial(arbiter_liveness, server))
    server.metrics_server = make_server(METRICS_HOST, METRICS_PORT, app, server_class=Threading, handler_class=Quiet)
    threading.Thread(target=server.metrics_server.serve_forever, daemon=True).start()
"""
TICK = os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def scrape_seconds(server: Server) -> float:
    started = time.perf_counter()
    requests.get(server.metrics, timeout=30).raise_for_status()
    return time.perf_counter() - started


def quiet_round(server: Server, scrapes: int) -> tuple[float, float]:
    """Median wall time of a scrape, and the master's CPU per scrape, over `scrapes` scrapes."""
    cpu = cpu_seconds(server.process.pid)
    walls = [scrape_seconds(server) for _ in range(scrapes)]
    return statistics.median(walls), (cpu_seconds(server.process.pid) - cpu) / scrapes


def stalled_round(server: Server, stalled: int) -> tuple[float, int]:
    """A scrape's wall time and the master's threads with `stalled` connections stalled mid-headers."""
    address = host_port(server.metrics)
    socks = [socket.create_connection(address, timeout=5) for _ in range(stalled)]
    try:
        for sock in socks:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: pod\r\n")
        time.sleep(0.2)
        return scrape_seconds(server), threads(server.process.pid)
    finally:
        for sock in socks:
            sock.close()


def burst_round(server: Server, burst: int) -> tuple[float, float]:
    """Time to open `burst` connections (held, silent), then a scrape's wall time."""
    address = host_port(server.metrics)
    started = time.perf_counter()
    socks = [socket.create_connection(address, timeout=60) for _ in range(burst)]
    try:
        connected = time.perf_counter() - started
        return connected, scrape_seconds(server)
    finally:
        for sock in socks:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=25)
    parser.add_argument("--stalled", type=int, default=60)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--burst-rounds", type=int, default=3)
    args = parser.parse_args()

    from app.train import train, write_artefact

    print(f"loadavg before: {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-metrics-port-") as tmp:
        state = Path(tmp)
        model = state / "model"
        model.mkdir()
        write_artefact(*train(), model)
        (state / "new").mkdir()
        (state / "old").mkdir()
        config = state / "wsgiref.conf.py"
        config.write_text(WSGIREF_WHEN_READY.format(conf=str(ROOT / "app" / "gunicorn.conf.py")))
        servers = {"new": start_server(state / "new", model), "old": start_server(state / "old", model, config=config)}
        results: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
        try:
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    server, figures = servers[name], results[name]
                    wall, cpu = quiet_round(server, args.scrapes)
                    figures.setdefault("scrape ms (quiet)", []).append(wall * 1e3)
                    figures.setdefault("master CPU ms per scrape", []).append(cpu * 1e3)
                    wall, count = stalled_round(server, args.stalled)
                    figures.setdefault(f"scrape ms ({args.stalled} stalled)", []).append(wall * 1e3)
                    figures.setdefault(f"master threads ({args.stalled} stalled)", []).append(count)
                    if round_ >= args.burst_rounds:
                        continue
                    connected, wall = burst_round(server, args.burst)
                    figures.setdefault(f"{args.burst} connects, s", []).append(connected)
                    figures.setdefault(f"scrape ms (after {args.burst} connects)", []).append(wall * 1e3)
        finally:
            for server in servers.values():
                server.stop()
    print(f"loadavg after: {loadavg()}")
    print(f"{'median over the rounds':<40} {'new':>10} {'wsgiref':>10} {'new/old':>8}")
    for figure in results["new"]:
        new, old = statistics.median(results["new"][figure]), statistics.median(results["old"][figure])
        print(f"{figure:<40} {new:>10.3f} {old:>10.3f} {new / old if old else float('nan'):>8.2f}")


if __name__ == "__main__":
    main()
