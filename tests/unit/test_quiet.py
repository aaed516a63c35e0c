"""The benchmarks' load guard: a round that starts on a busy machine makes every verdict "not measured"."""

from __future__ import annotations

from harness.quiet import LOAD_LIMIT, LoadGuard, Round, loadavg


def test_reads_the_load_averages() -> None:
    one, five, fifteen = loadavg()
    assert min(one, five, fifteen) >= 0


def test_a_round_started_above_the_limit_is_flagged() -> None:
    assert Round("r", (LOAD_LIMIT + 0.01, 0, 0)).busy
    assert not Round("r", (LOAD_LIMIT, 0, 0)).busy
    assert "BUSY" in Round("r", (3.0, 0, 0)).describe()


def test_verdicts() -> None:
    guard = LoadGuard(settle_seconds=0)
    guard.rounds += [Round("a", (0.2, 0, 0)), Round("b", (0.5, 0, 0))]
    assert (guard.verdict(True), guard.verdict(False)) == ("met", "NOT met")
    guard.rounds.append(Round("c", (1.5, 0, 0)))
    assert guard.verdict(True).startswith("not measured (1 of 3 rounds")
    assert guard.verdict(False).startswith("not measured")


def test_a_round_records_load_and_other_processes_cpu() -> None:
    guard = LoadGuard(settle_seconds=0)
    with guard.round("spin") as measured:
        sum(range(200_000))  # this process's own CPU is not counted as other processes'
    assert guard.rounds == [measured]
    assert measured.before[0] >= 0 and measured.after[0] >= 0
    assert measured.foreign_cpus >= 0
