"""The table of open connections per gunicorn worker, in shared memory, by which app/worker.py spreads kept-alive
connections evenly: each worker publishes its count in its slot, and accepts only while no live worker holds fewer.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import time

SLOT = struct.Struct("qqd")  # pid (0: free, -1: reserved by the master for a worker not yet running), conns, stamp
HEADER = struct.Struct("q")  # slots in use (a high-water mark: only these are scanned)
SLOTS = 256
# A slot whose worker has not written for this long is ignored (its worker died, hangs, or is stopping).
LIVE_SECONDS = 10.0
# A reserved slot whose worker never started is reused after this long.
RESERVED_SECONDS = 60.0
# Anonymous shared memory, mapped when gunicorn imports the worker class in the master: every worker forked from
# it shares the same pages, and a new master (a new pod) starts from an empty table.
TABLE = mmap.mmap(-1, HEADER.size + SLOTS * SLOT.size)


def slot_offset(slot: int) -> int:
    return HEADER.size + slot * SLOT.size


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reserve_slot(table: mmap.mmap = TABLE) -> int | None:
    """Pick a slot for a worker about to be forked; only the master calls this, from one thread.

    Slots of workers that died without leaving the table (SIGKILL, a crash) are cleared on the way: gunicorn
    has reaped them by the time it spawns their replacement, so their pids no longer exist.
    """
    now = time.monotonic()
    (used,) = HEADER.unpack_from(table, 0)
    chosen = None
    for slot in range(used):
        pid, _, stamp = SLOT.unpack_from(table, slot_offset(slot))
        if (pid > 0 and not alive(pid)) or (pid == -1 and now - stamp > RESERVED_SECONDS):
            SLOT.pack_into(table, slot_offset(slot), 0, 0, 0.0)
            pid = 0
        if pid == 0 and chosen is None:
            chosen = slot
    if chosen is None:
        if used >= SLOTS:
            return None
        chosen = used
        HEADER.pack_into(table, 0, used + 1)
    SLOT.pack_into(table, slot_offset(chosen), -1, 0, now)
    return chosen


def live_slots(table: mmap.mmap, now: float) -> list[tuple[int, int]]:
    """(pid, connections) of every live worker."""
    (used,) = HEADER.unpack_from(table, 0)
    return [
        (pid, conns)
        for pid, conns, stamp in SLOT.iter_unpack(table[HEADER.size : slot_offset(used)])
        if pid > 0 and now - stamp < LIVE_SECONDS
    ]


# Drawn once in the master (which imports this module before it forks): abstract Unix sockets are named per
# network namespace, and two servers in one (the containers of a pod, local pods in PID namespaces of their
# own) can have the same master and worker pids.
INSTANCE = secrets.token_hex(8)


def wake_address(master: int, pid: int) -> bytes:
    """The abstract Unix socket a worker listens on for "your turn to accept" (no file, gone with the process)."""
    return f"\0gunicorn-accept-{INSTANCE}-{master}-{pid}".encode()
