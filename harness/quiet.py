"""Is the machine quiet enough for a benchmark round to mean anything? The guard every benchmark shares.

A comparison measured while other jobs run is not evidence: on 2 shared CPUs, one server's rounds can meet a
busier machine than the other's, and a 0.86x ratio then reads as 1.95x (docs/benchmarks.md). So every
round records `/proc/loadavg` before and after it, and the CPU that processes outside the benchmark used
during it; a round that starts with the 1-minute load above `LOAD_LIMIT` is flagged, and any goal judged on
flagged rounds is "not measured", never "met" or "NOT met".

The benchmark's own rounds raise the 1-minute load too (an exponential average over a minute: 10 s with both
CPUs busy adds about 0.5), so before each round `settle` waits, up to a bound, until the load has fallen back
under the limit. A round that still starts above it is measured anyway and flagged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOAD_LIMIT = 1.0
SETTLE_SECONDS = 150.0


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def _busy_ticks() -> int:
    """CPU ticks spent by every process on the machine since boot (all but idle and iowait), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> int:
    """CPU ticks of this process, its reaped children (a finished load generator) and its live descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    ticks, todo, first = 0, [os.getpid()], True
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime; for this process also cutime, cstime: the children it has already waited for.
        ticks += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if first else 0)
        first = False
        todo.extend(children.get(pid, []))
    return ticks


def settle(limit: float = LOAD_LIMIT, timeout: float = SETTLE_SECONDS) -> float:
    """Waits until the 1-minute load is at or under `limit`, at most `timeout` seconds; returns the wait."""
    started = time.monotonic()
    while loadavg()[0] > limit and time.monotonic() - started < timeout:
        time.sleep(1.0)
    return time.monotonic() - started


@dataclass
class Round:
    label: str
    before: tuple[float, float, float]
    after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # CPUs' worth of work done by processes outside this benchmark during the round (0.5 = half a CPU).
    foreign_cpus: float = 0.0

    @property
    def busy(self) -> bool:
        return self.before[0] > LOAD_LIMIT

    def describe(self) -> str:
        flag = f"  BUSY: 1-min load {self.before[0]:.2f} > {LOAD_LIMIT} at the start" if self.busy else ""
        return f"load {self.before[0]:.2f} -> {self.after[0]:.2f}, other processes {self.foreign_cpus:.2f} CPUs{flag}"


@dataclass
class LoadGuard:
    """Records every round's load; says whether goals judged on them were measured at all."""

    settle_seconds: float = SETTLE_SECONDS
    rounds: list[Round] = field(default_factory=list)

    @contextmanager
    def round(self, label: str) -> Iterator[Round]:
        if self.settle_seconds > 0:
            settle(timeout=self.settle_seconds)
        tick = os.sysconf("SC_CLK_TCK")
        busy, own, started = _busy_ticks(), _own_ticks(), time.monotonic()
        current = Round(label, loadavg())
        yield current
        elapsed = max(time.monotonic() - started, 1e-9)
        foreign = (_busy_ticks() - busy) - (_own_ticks() - own)
        current.after = loadavg()
        current.foreign_cpus = max(foreign, 0) / tick / elapsed
        self.rounds.append(current)

    @property
    def busy_rounds(self) -> list[Round]:
        return [r for r in self.rounds if r.busy]

    def verdict(self, met: bool) -> str:
        """'met' / 'NOT met' on a quiet machine; 'not measured' when any round started above the load limit."""
        if self.busy_rounds:
            busy, total = len(self.busy_rounds), len(self.rounds)
            return f"not measured ({busy} of {total} rounds started at 1-min load > {LOAD_LIMIT})"
        return "met" if met else "NOT met"

    def summary(self) -> str:
        if not self.rounds:
            return "no rounds"
        starts = [r.before[0] for r in self.rounds]
        foreign = [r.foreign_cpus for r in self.rounds]
        return (
            f"1-min load at round starts {min(starts):.2f} to {max(starts):.2f} (limit {LOAD_LIMIT}); "
            f"other processes used {min(foreign):.2f} to {max(foreign):.2f} CPUs during the rounds; "
            f"{len(self.busy_rounds)} of {len(self.rounds)} rounds flagged busy"
        )
