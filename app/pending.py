"""Observations summed in the worker process and written to prometheus_client's shared values in the background.

A write to a multiprocess value takes a lock and packs into a memory-mapped file: about 1 to 2 µs, several of them
per request. What need not be exact at every scrape is summed here instead, in plain numbers, and written by one
background thread per worker every ``FLUSH_SECONDS`` and when the worker exits. What that costs in freshness and
what a SIGKILL loses: docs/metrics.md.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable

import numpy as np

FLUSH_SECONDS = 1.0


class PendingHistogram:
    """``observe`` for one histogram child, written on flush as one add per bucket that received any.

    prometheus_client keeps a histogram as per-bucket counts (made cumulative when collected) and a sum, each a
    value of its own; the flush adds to them what ``Histogram.observe`` would have, value by value: a value
    lands in the first bucket whose upper bound is >= it. The sum is added once per flush, so it may differ
    from value-by-value addition in the last bits.
    """

    def __init__(self, child) -> None:
        self._child = child
        self._bounds = list(child._upper_bounds)
        self._bounds_array = np.asarray(self._bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._lock = threading.Lock()
        FLUSHER.register(self.flush)

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)
        with self._lock:
            self._counts[bucket] += 1
            self._sum += value
        FLUSHER.ensure_running()

    def observe_all(self, values: np.ndarray) -> None:
        """As ``observe`` for each value, at the cost of a few numpy calls whatever their number."""
        counts = np.bincount(np.searchsorted(self._bounds_array, values, side="left"), minlength=len(self._bounds))
        total = float(values.sum())
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts.tolist(), strict=True)]
            self._sum += total
        FLUSHER.ensure_running()

    def flush(self) -> None:
        with self._lock:
            counts, total = self._counts, self._sum
            self._counts, self._sum = [0] * len(counts), 0.0
        if not any(counts):
            return
        self._child._sum.inc(total)
        for bucket, count in enumerate(counts):
            if count:
                self._child._buckets[bucket].inc(count)


class _Flusher:
    """One daemon thread per worker process, started at its first observation; flushes again at exit."""

    def __init__(self) -> None:
        self._flushes: list[Callable[[], None]] = []
        self._running = False
        self._lock = threading.Lock()
        # A forked worker inherits the flag of the process it was forked from, but not its threads.
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self._running = False
        self._lock = threading.Lock()

    def register(self, flush: Callable[[], None]) -> None:
        self._flushes.append(flush)

    def ensure_running(self) -> None:
        if self._running:
            return
        with self._lock:
            if self._running:
                return
            self._running = True
            threading.Thread(target=self._loop, name="metrics-flusher", daemon=True).start()
            atexit.register(self.flush)

    def flush(self) -> None:
        for flush in list(self._flushes):
            flush()

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


FLUSHER = _Flusher()
