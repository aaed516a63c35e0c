"""Which gunicorn worker holds which connection: read from /proc, as `ss -tnp` would show it."""

from __future__ import annotations

from pathlib import Path

from benchmarks.process_tree import socket_inodes

ESTABLISHED = "01"
LISTEN = "0A"


def worker_pids(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _connection_inodes(port: int, closing: bool) -> set[str]:
    """Inodes of the TCP connections whose local port is `port` (the server's side): established ones, and with
    `closing` also those the client has closed but the server not yet (CLOSE_WAIT...)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            wanted = state != LISTEN if closing else state == ESTABLISHED
            if wanted and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def connections_per_worker(master: int, port: int, closing: bool = False) -> dict[int, int]:
    """Established connections to `port` each worker of `master` holds (0 for a worker holding none); with
    `closing`, also those whose client has closed and the worker has not yet."""
    return connections_per_process(worker_pids(master), port, closing)


def connections_per_process(pids: list[int], port: int, closing: bool = False) -> dict[int, int]:
    """As `connections_per_worker`, for any processes (a server whose front process holds connections too)."""
    found = _connection_inodes(port, closing)
    return {pid: len(socket_inodes(pid) & found) for pid in pids}


def spread(counts: dict[int, int]) -> tuple[int, ...]:
    """The counts, largest first: (3, 1) for three connections on one worker and one on the other."""
    return tuple(sorted(counts.values(), reverse=True))
