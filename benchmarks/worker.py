"""The serving worker's cost per request, and how it spreads connections: gunicorn's stock gthread worker against
`app.worker.BufferingWorker`, round by round.

    python -m benchmarks.worker [--rounds 6] [--seconds 3] [--connections 4] [--rows 1 256] [--workers 2]

Starts THE gunicorn command twice on free 127.0.0.1 ports, once as configured (`app.worker.BufferingWorker`)
and once with `worker_class = "gthread"`, and alternates them round by round: each round opens
`--connections` kept-alive connections at once (as wrk does), runs closed-loop `POST /predict` on them for
`--seconds`, and records requests/s, the whole-process CPU of the workers per request (utime + stime from
/proc, so the poller thread counts as well as the request threads) and how many of the connections each
worker held. Prints each round, the medians, the ratios (buffering / stock), and /proc/loadavg before and
after every round; figures taken while the load average is over 1 are marked "under load".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.connections import connections_per_worker, spread, worker_pids
from harness.load import ROW, host_port
from harness.quiet import loadavg
from harness.server import ROOT, Server, start_server

STOCK = """
exec(open({conf!r}).read())

worker_class = "gthread"
"""
VARIANTS = ("stock", "buffering")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def request_bytes(rows: int) -> bytes:
    body = json.dumps({"instances": [ROW] * rows}).encode()
    return (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _read_answer(sock: socket.socket, pending: bytes) -> tuple[int, bytes]:
    got = pending
    while True:
        head_end = got.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"(?i)content-length: *(\d+)", got[:head_end]).group(1))
            end = head_end + 4 + length
            if len(got) >= end:
                return int(got.split(b" ", 2)[1]), got[end:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk


@dataclass
class Round:
    variant: str
    rows: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    spread: tuple[int, ...] = ()
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / max(self.requests, 1)


def run_round(server: Server, variant: str, rows: int, connections: int, seconds: float) -> Round:
    address = host_port(server.app)
    payload = request_bytes(rows)
    result = Round(variant, rows)
    # Each round is a fresh set of clients: wait until the workers have closed the last round's connections, or a
    # worker still counting connections its clients already closed would look busier than it is.
    deadline = time.monotonic() + 10
    master, port = server.process.pid, address[1]
    while sum(connections_per_worker(master, port, closing=True).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    socks = [socket.create_connection(address, timeout=10) for _ in range(connections)]
    lock = threading.Lock()
    go, stop = threading.Event(), threading.Event()

    def client(sock: socket.socket) -> None:
        done, errors, pending = 0, 0, b""
        go.wait()
        while not stop.is_set():
            try:
                sock.sendall(payload)
                status, pending = _read_answer(sock, pending)
                done += status == 200
                errors += status != 200
            except OSError:
                errors += 1
                break
        with lock:
            result.requests += done
            result.errors += errors

    threads = [threading.Thread(target=client, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    workers = worker_pids(server.process.pid)
    result.load_before = loadavg()
    cpu0, t0 = cpu_seconds(workers), time.monotonic()
    go.set()
    time.sleep(seconds / 2)
    result.spread = spread(connections_per_worker(server.process.pid, address[1]))
    time.sleep(seconds / 2)
    stop.set()
    for t in threads:
        t.join()
    result.seconds, result.cpu = time.monotonic() - t0, cpu_seconds(workers) - cpu0
    result.load_after = loadavg()
    for s in socks:
        s.close()
    return result


def print_medians(results: list[Round], sizes: list[int]) -> None:
    print("medians (ratio = buffering / stock):")
    for rows in sizes:
        med = {}
        for variant in VARIANTS:
            mine = [r for r in results if r.rows == rows and r.variant == variant]
            med[variant] = (
                statistics.median(r.rps for r in mine),
                statistics.median(r.cpu_ms for r in mine),
                min(r.rps for r in mine) / statistics.median(r.rps for r in mine),
            )
        for variant in VARIANTS:
            rps, cpu, low = med[variant]
            print(
                f"  {rows:>3} rows {variant:>9}: {rps:8.0f} req/s, {cpu:.3f} ms CPU/request, "
                f"lowest round {low:.2f}x the median"
            )
        print(
            f"  {rows:>3} rows     ratio: req/s {med['buffering'][0] / med['stock'][0]:.3f}x, "
            f"CPU/request {med['buffering'][1] / med['stock'][1]:.3f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="rounds per variant and batch size")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from app.train import train, write_artefact

    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        state = Path(tmp)
        model = state / "model"
        model.mkdir()
        write_artefact(*train(), model)
        stock_conf = state / "stock.conf.py"
        stock_conf.write_text(STOCK.format(conf=str(ROOT / "app" / "gunicorn.conf.py")))
        servers: dict[str, Server] = {}
        try:
            for variant in VARIANTS:
                directory = state / variant
                directory.mkdir()
                config = stock_conf if variant == "stock" else None
                servers[variant] = start_server(directory, model, args.workers, config=config)
            print(
                f"benchmarks.worker: {args.workers} workers x 4 threads, {args.connections} kept-alive connections, "
                f"{args.rounds} rounds of {args.seconds:g} s per variant and batch size; /proc/loadavg {loadavg()}"
            )
            results: list[Round] = []
            for rows in args.rows:
                for warm in VARIANTS:
                    run_round(servers[warm], warm, rows, args.connections, 0.5)
                for i in range(args.rounds):
                    order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
                    for variant in order:
                        r = run_round(servers[variant], variant, rows, args.connections, args.seconds)
                        results.append(r)
                        busy = " (under load)" if max(r.load_before[0], r.load_after[0]) > 1 else ""
                        print(
                            f"  {rows:>3} rows {variant:>9}: {r.rps:8.0f} req/s, {r.cpu_ms:.3f} ms CPU/request, "
                            f"connections per worker {r.spread}, errors {r.errors}, "
                            f"load {r.load_before[0]:.2f} -> {r.load_after[0]:.2f}{busy}",
                            flush=True,
                        )
            print_medians(results, args.rows)
            print(f"/proc/loadavg at the end: {loadavg()}")
        finally:
            for server in servers.values():
                if server.process.poll() is None:
                    os.killpg(server.process.pid, signal.SIGTERM)
                    server.process.wait(40)


if __name__ == "__main__":
    main()
