"""Load, scrapes and process inspection for the reliability tests: real sockets, real pids, nothing mocked.

Clients open a fresh connection per request (no keep-alive connection outlives the worker it was bound to), so
a failure can be classified exactly: refused (nobody listening), reset/disconnected before any response
(accepted by the kernel, never answered), or a response with a status.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

ROW = [13.2, 2.77, 2.51, 18.5, 96, 1.48, 0.6, 0.42, 1.9, 7.8, 0.78, 1.55, 600]
BODY = json.dumps({"instances": [ROW]}).encode()

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
# Sample name suffixes whose value may only grow: counters, and histograms of non-negative observations
# (durations, confidences, row counts), whose `_sum` grows too.
MONOTONIC_TYPES = {"counter", "histogram"}


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def classify(exc: BaseException) -> str:
    """A stable name for why a request got no (complete) HTTP response."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    # RemoteDisconnected is a ConnectionResetError: both mean the connection closed before any response.
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        return "reset"
    if isinstance(exc, http.client.IncompleteRead):
        return "cut"  # the status line and headers arrived, the body did not
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "refused"
    return f"other:{type(exc).__name__}"


def post_once(address: tuple[str, int], body: bytes = BODY, timeout: float = 10.0) -> int:
    """One POST /predict on a new connection; returns the status or raises what the socket raised."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@dataclass
class Load:
    """`threads` closed-loop clients sending POST /predict until stopped; counts every outcome."""

    app: str
    threads: int = 4
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    # (monotonic time, outcome) of every request, for "what happened after t" questions.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    stop_on_refused: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        address = host_port(self.app)
        while not self._stop.is_set():
            try:
                outcome = str(post_once(address))
            except Exception as exc:  # every exception is an outcome to count, not a test error
                outcome = classify(exc)
            with self._lock:
                if outcome.isdigit():
                    self.statuses[int(outcome)] += 1
                else:
                    self.failures[outcome] += 1
                self.timeline.append((time.monotonic(), outcome))
            if outcome == "refused":
                if self.stop_on_refused:
                    return
                time.sleep(0.01)

    def start(self) -> Load:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._workers), "a load thread did not finish"

    @property
    def ok(self) -> int:
        return self.statuses[200]


def typed_samples(text: str) -> dict[SampleKey, tuple[str, float]]:
    """{(sample name, sorted labels): (family type, value)} for every sample of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): (family.type, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Scraper:
    """Scrapes `/metrics` every `interval` seconds in a thread and keeps every parsed scrape."""

    url: str
    interval: float = 0.1
    scrapes: list[dict[SampleKey, tuple[str, float]]] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    error_details: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                response = session.get(self.url, timeout=5)
                response.raise_for_status()
                self.durations.append(time.perf_counter() - started)
                self.scrapes.append(typed_samples(response.text))
            except requests.RequestException as exc:
                self.errors[type(exc).__name__] += 1
                self.error_details.append(str(exc)[:300])
            self._stop.wait(self.interval)

    def start(self) -> Scraper:
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def monotonicity_violations(
    scrapes: list[dict[SampleKey, tuple[str, float]]],
) -> list[str]:
    """Every counter/histogram sample that went down between two consecutive scrapes, and every series
    (of any type) that was exposed by one scrape and missing from the next."""
    problems = []
    for i, (before, after) in enumerate(itertools.pairwise(scrapes)):
        for key, (kind, value) in before.items():
            if key not in after:
                problems.append(f"scrape {i + 1}: {key} disappeared")
            elif kind in MONOTONIC_TYPES and after[key][1] < value:
                problems.append(f"scrape {i + 1}: {key} went from {value!r} to {after[key][1]!r}")
    return problems


# ---- processes ---------------------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """Direct children of a process, from /proc (every thread lists the children it forked)."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.update(int(p) for p in path.read_text().split())
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0  # a zombie has no VmRSS line


def tree_rss_kib(master: int) -> int:
    """Resident memory of the master and its workers together, in KiB."""
    return sum(rss_kib(pid) for pid in {master, *children(master)} if alive(pid))


def live_workers(master: int) -> set[int]:
    return {pid for pid in children(master) if alive(pid)}


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def read_multiproc_dir(directory: Path) -> str:
    """The exposition the master would serve, read straight from the multiprocess files (for after it exited)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry).decode()


def booted_workers(log: Path) -> int:
    """How many workers gunicorn has started so far, from its log."""
    return log.read_text(errors="replace").count("Booting worker with pid")


def report(name: str, **figures: object) -> None:
    """One line of measured figures; shown with `pytest -s` (docs/reliability.md quotes them)."""
    print(f"\n[figure] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def log_tracebacks(log: Path, limit: int = 3) -> list[str]:
    """The last lines of each Python traceback in a server log (what a failed scrape or request left there)."""
    lines = log.read_text(errors="replace").splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((j for j in range(i + 1, len(lines)) if not lines[j].startswith((" ", "Traceback"))), i)
            found.append("\n".join(lines[max(i, end - 3) : end + 1]))
    return found[-limit:]


def scrape_failures(scraper: Scraper, log: Path) -> list[str]:
    """Every failed scrape, with the tracebacks the server logged. app/exposition.py skips the 0-byte files of
    prometheus/client_python#1199 (a worker between creating and sizing a file), so there must be none."""
    failed = sum(scraper.errors.values())
    if not failed:
        return []
    return [f"{failed} failed scrapes ({dict(scraper.errors)})", *log_tracebacks(log, limit=10)]
