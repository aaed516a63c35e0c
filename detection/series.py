"""A scenario's timeline of sampled minutes, written as promtool `input_series` at the scrape interval."""

from __future__ import annotations

import math

import numpy as np

from detection.sampling import Pools
from detection.scenarios import NO_TARGET, Scenario
from detection.traffic import Sample, SeriesKey

# -- timelines -> promtool input series ---------------------------------------------------------------------


def timeline(scenario: Scenario, pools: Pools, rng: np.random.Generator) -> list[Sample | None]:
    out: list[Sample | None] = []
    for kind, minutes in scenario.phases:
        if kind is NO_TARGET:
            out.extend([None] * minutes)
        else:
            pool = pools.minutes[kind]
            out.extend(pool[i] for i in rng.integers(0, len(pool), minutes))
    return out


def _number(value: float) -> str:
    return f"{value:.12g}"


class _Values:
    """A promtool `values` string, runs of equal steps folded into `a+bxn`."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self._run: tuple[float, float, int] | None = None  # first value, step, samples
        self._missing = 0

    def _flush(self) -> None:
        if self._missing:
            self.tokens.append("_" if self._missing == 1 else f"_x{self._missing}")
            self._missing = 0
        if self._run:
            first, step, count = self._run
            self.tokens.append(
                f"{_number(first)}+{_number(step)}x{count - 1}" if step else f"{_number(first)}x{count - 1}"
            )
            self._run = None

    def add(self, first: float, step: float, count: int) -> None:
        if self._run and self._run[1] == step and math.isclose(self._run[0] + self._run[1] * self._run[2], first):
            self._run = (self._run[0], step, self._run[2] + count)
            return
        self._flush()
        self._run = (first, step, count)

    def missing(self, count: int) -> None:
        if self._run:
            self._flush()
        self._missing += count

    def stale(self) -> None:
        self._flush()
        self.tokens.append("stale")

    def text(self) -> str:
        self._flush()
        return " ".join(self.tokens)


def _series_name(key: SeriesKey, target: dict[str, str]) -> str:
    name, labels = key
    # Target labels win over exposed ones, as with the operator's default honor_labels: false.
    merged = {**dict(labels), **target}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(merged.items())) + "}"


def input_series(
    minutes: list[Sample | None], pools: Pools, target: dict[str, str], steps: int, wanted: set[str]
) -> list[dict[str, str]]:
    keys = {k for k in pools.start if k[0] in wanted}
    keys |= {k for m in minutes if m for k in m if k[0] in wanted}
    series = [{"series": _series_name(("up", ()), target), "values": _up(minutes, steps)}]
    for key in sorted(keys):
        values = _Values()
        gauge = key[0] in pools.gauges
        value = pools.start.get(key)
        if gauge and value is None:
            continue  # a gauge of the model-less service only
        stale = False
        for minute in minutes:
            if minute is None:
                if value is not None and not stale:
                    values.stale()
                    values.missing(steps - 1)
                else:
                    values.missing(steps)
                stale = True
                continue
            if stale:
                raise ValueError("a target that reappears is not modelled")
            if gauge:
                values.add(value, 0.0, steps)
                continue
            increment = minute.get(key, 0.0)
            step = increment / steps
            if value is None:
                if increment <= 0:
                    values.missing(steps)
                    continue
                # Created during this minute: first seen by the scrape after its creation.
                values.missing(1)
                values.add(step, step, steps - 1)
                value = increment
                continue
            values.add(value, step, steps)
            value += increment
        series.append({"series": _series_name(key, target), "values": values.text()})
    return series


def _up(minutes: list[Sample | None], steps: int) -> str:
    values = _Values()
    for i, minute in enumerate(minutes):
        if minute is None:
            if i and minutes[i - 1] is not None:
                values.stale()
                values.missing(steps - 1)
            else:
                values.missing(steps)
        else:
            values.add(1.0, 0.0, steps)
    return values.text()
