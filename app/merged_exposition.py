"""The workers' multiprocess files merged into one text exposition, with what does not change kept between scrapes.

prometheus_client's `MultiProcessCollector` parses every key of every file (JSON) on every scrape, builds a
`Metric` and a `Sample` per series, and escapes every label name and value again: at 1 100 series x 3 files it
cost the master about 30 ms of CPU per scrape. A file only ever grows by appending keys, so here each file's keys
are parsed once, each series' line up to its value is rendered once, and a scrape reads the values at their known
offsets, merges them as `MultiProcessCollector.merge(accumulate=True)` does (counters, summaries and histogram
buckets summed, buckets made cumulative with `_count` their total; gauges by their multiprocess mode) and writes
the lines. `tests/unit/test_merged_exposition.py` holds the two to the same samples on generated files.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.openmetrics.exposition import UNDERSCORES, escape_label_name, escape_metric_name
from prometheus_client.utils import floatToGoString

_USED = struct.Struct("i")
_DOUBLES = struct.Struct("dd")
_SUM_MODES = frozenset({"sum", "livesum"})
_PID_MODES = frozenset({"all", "liveall"})  # the only gauges whose series keep the writing process's pid


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line_head(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """The text format's sample line up to its value: name{labels} (the label order is the library's, sorted)."""
    inner = ",".join(f'{escape_label_name(k, UNDERSCORES)}="{_label_value(v)}"' for k, v in sorted(labels))
    shown = escape_metric_name(name, UNDERSCORES)
    return f"{shown}{{{inner}}} " if inner else f"{shown} "


@dataclass
class _Family:
    name: str
    typ: str  # counter, gauge, histogram or summary (from the file's name)
    help: str
    slots: list[int] = field(default_factory=list)  # plain series (histograms: `_sum` and the like)
    # histograms: labels without `le` -> [(bound, raw bucket slot)] and the `_count` line's head
    buckets: dict[tuple, list[tuple[float, int]]] = field(default_factory=dict)
    count_heads: dict[tuple, str] = field(default_factory=dict)
    bucket_heads: dict[int, str] = field(default_factory=dict)


@dataclass
class _FileView:
    inode: int
    parsed: int = 8  # bytes of the file whose keys are known
    kind: str = "sum"
    entries: list[tuple[int, int]] = field(default_factory=list)  # (offset of the value, slot)


class MergedFiles:
    """The merged exposition of one multiprocess directory; one per process (the master), used under a lock."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.views: dict[str, _FileView] = {}
        self.families: dict[str, _Family] = {}
        self.slot_of: dict[tuple, int] = {}
        self.heads: list[str] = []  # slot -> its line's head (for histogram buckets: unused)
        self.exposed: dict[str, float] = {}  # counter and histogram lines: the highest value exposed so far

    # ---- files and their keys ----------------------------------------------------------------------------

    def _read(self, path: str, name: str) -> tuple[_FileView, bytes] | None:
        try:
            with open(path, "rb") as f:
                inode = os.fstat(f.fileno()).st_ino
                data = f.read()
        except FileNotFoundError:  # a dead worker's file, folded or removed since the directory was listed
            return None
        if len(data) < 8:
            return None  # created, not yet sized (client_python#1199): nothing recorded yet
        used = _USED.unpack_from(data, 0)[0]
        view = self.views.get(name)
        if view is None or view.inode != inode or used < view.parsed:
            view = self.views[name] = _FileView(inode, kind=self._kind(name))
        self._parse_new_keys(view, name, data, min(used, len(data)))
        return view, data

    @staticmethod
    def _kind(name: str) -> str:
        parts = name[:-3].split("_")
        if parts[0] != "gauge":
            return "sum"
        mode = parts[1]
        if mode in _SUM_MODES:
            return "sum"
        return {"min": "min", "livemin": "min", "max": "max", "livemax": "max"}.get(
            mode, "recent" if "mostrecent" in mode else "set"
        )

    def _parse_new_keys(self, view: _FileView, name: str, data: bytes, used: int) -> None:
        pos = view.parsed
        while pos + 4 <= used:
            length = _USED.unpack_from(data, pos)[0]
            padded = length + (8 - (length + 4) % 8)
            value_at = pos + 4 + padded
            if length <= 0 or value_at + 16 > used:
                break  # an entry still being written (read at the next scrape), or a damaged file: never loop back
            key = data[pos + 4 : pos + 4 + length].decode("utf-8")
            view.entries.append((value_at, self._slot(name, key)))
            pos = value_at + 16
        view.parsed = pos

    def _slot(self, file_name: str, key: str) -> int:
        family_name, sample_name, labels, help_text = json.loads(key)
        parts = file_name[:-3].split("_")
        typ, mode = parts[0], (parts[1] if parts[0] == "gauge" else "")
        label_items = tuple(sorted(labels.items()))
        if mode in _PID_MODES:
            label_items += (("pid", parts[2]),)
        identity = (family_name, sample_name, label_items)
        slot = self.slot_of.get(identity)
        if slot is not None:
            return slot
        family = self.families.get(family_name)
        if family is None:
            family = self.families[family_name] = _Family(family_name, typ, help_text)
        slot = self.slot_of[identity] = len(self.heads)
        bound = labels.get("le") if typ == "histogram" else None
        if bound is None:
            self.heads.append(_line_head(sample_name, label_items))
            family.slots.append(slot)
            return slot
        self.heads.append("")
        rest = tuple(item for item in label_items if item[0] != "le")
        family.buckets.setdefault(rest, []).append((float(bound), slot))
        family.buckets[rest].sort()
        family.bucket_heads[slot] = _line_head(f"{family_name}_bucket", (*rest, ("le", bound)))
        family.count_heads.setdefault(rest, _line_head(f"{family_name}_count", rest))
        return slot

    # ---- a scrape ------------------------------------------------------------------------------------------

    def _merge(self, names: list[str]) -> list[float | None]:
        for gone in self.views.keys() - set(names):
            del self.views[gone]
        values: list[float | None] = [None] * len(self.heads)
        stamps: dict[int, float] = {}
        for name in names:
            read = self._read(os.path.join(self.directory, name), name)
            if read is None:
                continue
            view, data = read
            if len(values) < len(self.heads):
                values.extend([None] * (len(self.heads) - len(values)))
            self._combine(view, data, values, stamps)
        return values

    @staticmethod
    def _combine(view: _FileView, data: bytes, values: list[float | None], stamps: dict[int, float]) -> None:
        unpack = _DOUBLES.unpack_from
        if view.kind == "sum":
            for at, slot in view.entries:
                value = unpack(data, at)[0]
                current = values[slot]
                values[slot] = value if current is None else current + value
            return
        for at, slot in view.entries:
            value, stamp = unpack(data, at)
            current = values[slot]
            if view.kind == "recent":
                if stamp > stamps.get(slot, 0.0):  # as the library: a value never stamped is not shown
                    values[slot], stamps[slot] = value, stamp
            elif current is None or view.kind == "set":
                values[slot] = value
            elif view.kind == "max":
                values[slot] = max(current, value)
            else:
                values[slot] = min(current, value)

    def _monotonic(self, head: str, value: float) -> float:
        # Regrouping float sums when a dead worker's files are folded can move a `_sum` down by an ulp, which
        # Prometheus would read as a counter reset: expose the high-water mark (hides only that).
        seen = self.exposed.get(head)
        if seen is not None and (value < seen or math.isnan(value)):
            return seen
        self.exposed[head] = value
        return value

    def render(self, names: Iterable[str]) -> str:
        """The text exposition (format 0.0.4) of the files in `names` (file names in the directory)."""
        values = self._merge(sorted(n for n in names if n.endswith(".db")))
        out: list[str] = []
        for family in sorted(self.families.values(), key=lambda f: f.name):
            lines = self._family_lines(family, values)
            if not lines:
                continue
            shown = f"{family.name}_total" if family.typ == "counter" else family.name
            doc = family.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {shown} {doc}\n# TYPE {shown} {family.typ}\n")
            out.extend(lines)
        return "".join(out)

    def _family_lines(self, family: _Family, values: list[float | None]) -> list[str]:
        monotonic = family.typ in ("counter", "histogram")
        lines = []
        for slot in family.slots:
            value = values[slot]
            if value is not None:
                head = self.heads[slot]
                lines.append(f"{head}{floatToGoString(self._monotonic(head, value) if monotonic else value)}\n")
        for rest, bounds in family.buckets.items():
            if all(values[slot] is None for _, slot in bounds):
                continue
            total = 0.0
            for _, slot in bounds:
                value = values[slot]
                if value is None:  # a bucket only files gone since held: the library leaves it out too
                    continue
                total += value
                head = family.bucket_heads[slot]
                lines.append(f"{head}{floatToGoString(self._monotonic(head, total))}\n")
            head = family.count_heads[rest]
            lines.append(f"{head}{floatToGoString(self._monotonic(head, total))}\n")
        return lines
