"""Kept-alive connections spread evenly over the workers (app/worker.py), with THE gunicorn command.

A load generator opens its connections at once and keeps them: whichever worker takes each one serves it for
the whole run. With gunicorn's stock gthread worker, whichever worker woke first took it, and 4 connections
ended 3-1 or 4-0 on 2 workers (docs/reliability.md). Counted from /proc (the sockets each worker pid holds).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.connections import connections_per_worker, spread, worker_pids
from harness.load import host_port

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def _serve_once(sock: socket.socket) -> None:
    """One request on a kept-alive connection, its whole answer read."""
    sock.sendall(REQUEST)
    got = b""
    while True:
        head_end = got.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"(?i)content-length: *(\d+)", got[:head_end]).group(1))
            if len(got) >= head_end + 4 + length:
                assert got.startswith(b"HTTP/1.1 200"), got[:100]
                return
        chunk = sock.recv(4096)
        assert chunk, "closed"
        got += chunk


@pytest.mark.parametrize("clients", [4, 16])
def test_kept_alive_connections_spread_evenly_over_the_workers(server, clients):
    address = host_port(server.app)
    # The server answers once one worker does; the other may still be booting, and takes no connection until it
    # runs (as in a pod before its readiness probe passes). Both running: each has its connection table slot.
    deadline = time.monotonic() + 20
    while len(worker_pids(server.process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    for attempt in range(3):  # three rounds of connections opened together, as a load generator does
        with ThreadPoolExecutor(clients) as pool:
            socks = list(pool.map(lambda _: socket.create_connection(address, timeout=10), range(clients)))
            try:
                for _ in range(3):
                    list(pool.map(_serve_once, socks))
                time.sleep(0.2)
                counts = connections_per_worker(server.process.pid, address[1])
            finally:
                for sock in socks:
                    sock.close()
        print(f"\n[figure] {clients} kept-alive clients, round {attempt + 1}: per worker {spread(counts)}")
        assert len(counts) == 2 and sum(counts.values()) == clients, counts
        assert max(counts.values()) - min(counts.values()) <= 1, spread(counts)
        time.sleep(0.5)


def test_a_killed_workers_slot_holds_nobody_back(server_factory):
    server = server_factory(workers=2)
    master, address = server.process.pid, host_port(server.app)
    deadline = time.monotonic() + 20
    while len(worker_pids(master)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    # SIGKILL an idle worker: it never clears its slot, which says 0 connections, the least of all. Unless the
    # master clears it when it spawns the replacement, no live worker may accept a second connection until the
    # slot goes stale (10 s).
    victim = worker_pids(master)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (victim in worker_pids(master) or len(worker_pids(master)) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    started = time.monotonic()
    socks = [socket.create_connection(address, timeout=10) for _ in range(4)]
    try:
        for sock in socks:
            _serve_once(sock)
        served_within = time.monotonic() - started
        counts = connections_per_worker(master, address[1])
    finally:
        for sock in socks:
            sock.close()
    print(f"\n[figure] after a SIGKILL: per worker {spread(counts)}, 4 connections served in {served_within:.2f} s")
    assert spread(counts) == (2, 2), counts
    assert served_within < 2.0


def test_with_reuse_port_every_workers_own_listener_is_served(server_factory):
    # reuse_port gives each worker a listening socket of its own, and the kernel hashes each connection to one
    # of them: a worker that declined to accept (it holds more than the other) would leave the connections
    # queued on its socket unanswered until its load fell (the local stack's pods share their port this way).
    server = server_factory(workers=2, GUNICORN_CMD_ARGS="--reuse-port")
    master, address = server.process.pid, host_port(server.app)
    deadline = time.monotonic() + 20
    while len(worker_pids(master)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    socks = []
    try:
        for _ in range(16):  # one after another, each kept open: each answered with the others still held
            socks.append(socket.create_connection(address, timeout=5))
            _serve_once(socks[-1])
        counts = connections_per_worker(master, address[1])
    finally:
        for sock in socks:
            sock.close()
    print(f"\n[figure] reuse_port, 16 connections opened one by one: per worker {spread(counts)}")
    assert sum(counts.values()) == 16, counts
