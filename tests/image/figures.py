"""Lines for the terminal summary of a run (build times, served versions): shown with or without `-s`.

A module of its own so that the conftest and the tests share one list (a test importing the conftest would
get a second copy of it).
"""

from __future__ import annotations

from pathlib import Path

SUMMARY: list[str] = []


def note(line: str) -> None:
    SUMMARY.append(f"{line} (load average {Path('/proc/loadavg').read_text().split()[0]})")
