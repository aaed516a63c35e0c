"""What the liveness probe asks the gunicorn master: is it still running its workers?

Answered by the master on the metrics port (app/exposition.py), never by a worker: a worker's request
threads are what slow or stalled clients occupy, and a probe queued behind them would restart a pod that is
only busy. What it means and why: docs/reliability.md, "Liveness".
"""

from __future__ import annotations

import time

# Why the master is not live. A fixed set.
NO_WORKERS = "no_workers"
NO_WORKER_HEARTBEAT = "no_worker_heartbeat"


def arbiter_liveness(arbiter) -> str | None:
    """None while at least one of the arbiter's workers has beaten within the arbiter's `timeout`.

    A worker beats from its own event loop (gthread: at least once a second), whatever its request threads
    are doing; the arbiter kills one that misses `timeout` and starts another. So: no heartbeat within
    `timeout` from any worker means the master stopped doing that (wedged, or its workers cannot start),
    which only a restart mends. Reads the same heartbeat files, with the same clock, as the arbiter.
    """
    workers = list(arbiter.WORKERS.values())  # the master's main loop may change the dict meanwhile
    if not workers:
        return NO_WORKERS
    timeout = arbiter.timeout
    now = time.monotonic()
    for worker in workers:
        try:
            if not timeout or now - worker.tmp.last_update() <= timeout:
                return None
        except (OSError, ValueError):  # reaped meanwhile: its heartbeat file is closed
            continue
    return NO_WORKER_HEARTBEAT
