"""Process inspection from /proc, server logs and figures: real pids, nothing mocked."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.exposition import Scraper


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
