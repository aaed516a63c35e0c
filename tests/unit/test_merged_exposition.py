"""app/merged_exposition.py against prometheus_client's own merge, on multiprocess files written as the library
writes them: the same samples, whatever the labels hold, after keys were added and values moved between two
scrapes, with files of processes gone in between."""

from __future__ import annotations

import math
import struct
import tempfile
import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from app.exposition import fold_dead_worker
from app.merged_exposition import MergedFiles

# (file type prefix, family type): gauges carry their multiprocess mode in the file's name.
KINDS = [
    ("counter", "counter"),
    ("histogram", "histogram"),
    ("summary", "summary"),
    ("gauge_livesum", "gauge"),
    ("gauge_max", "gauge"),
    ("gauge_min", "gauge"),
    ("gauge_all", "gauge"),
    ("gauge_mostrecent", "gauge"),
]
BOUNDS = ["0.1", "1.0", "+Inf"]
label_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
values = st.floats(min_value=0, max_value=1e9, allow_nan=False)


def _keys(prefix: str, family: str, labels: dict[str, str]) -> list[str]:
    names, vals = list(labels), list(labels.values())
    if prefix == "counter":
        return [mmap_key(family, f"{family}_total", names, vals, 'help "x"\\\n')]
    if prefix == "summary":
        return [mmap_key(family, f"{family}{s}", names, vals, "help") for s in ("_sum", "_count")]
    if prefix == "histogram":
        return [mmap_key(family, f"{family}_sum", names, vals, "help")] + [
            mmap_key(family, f"{family}_bucket", [*names, "le"], [*vals, b], "help") for b in BOUNDS
        ]
    return [mmap_key(family, family, names, vals, "help")]


@st.composite
def writes(draw):
    """[(file name, key, value, timestamp)] for a few families over a few processes."""
    out = {}
    for index, (prefix, _typ) in enumerate(draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4, unique=True))):
        family = f"m{index}"
        label_sets = draw(st.lists(st.dictionaries(st.sampled_from(["a", "b"]), label_values), min_size=1, max_size=3))
        for pid in draw(st.lists(st.sampled_from(["11", "12", "13"]), min_size=1, max_size=3, unique=True)):
            for labels in label_sets:
                for key in _keys(prefix, family, labels):
                    out[(f"{prefix}_{pid}.db", key)] = (draw(values), draw(st.floats(0, 1e6)))
    return [(name, key, value, stamp) for (name, key), (value, stamp) in out.items()]  # each key once


def _write(directory: Path, entries) -> None:
    files: dict[str, MmapedDict] = {}
    for name, key, value, stamp in entries:
        if name not in files:
            files[name] = MmapedDict(str(directory / name))
        files[name].write_value(key, value, stamp)
    for f in files.values():
        f.close()


def _library(directory: Path) -> dict:
    files = sorted(str(p) for p in directory.glob("*.db"))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in MultiProcessCollector.merge(files, accumulate=True)
        for s in metric.samples
    }


def _ours(merged: MergedFiles, directory: Path) -> dict:
    text = merged.render(p.name for p in directory.iterdir())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _same(ours: dict, library: dict) -> None:
    assert ours.keys() == library.keys()
    for key, value in library.items():
        assert math.isclose(ours[key], value, rel_tol=1e-9, abs_tol=1e-9), (key, ours[key], value)


@settings(max_examples=300, deadline=None)
@given(writes(), st.data())
def test_the_same_samples_as_the_librarys_merge_across_two_scrapes(entries, data):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        first = data.draw(st.integers(0, len(entries)))
        _write(directory, entries[:first])
        merged = MergedFiles(str(directory))
        _same(_ours(merged, directory), _library(directory))
        # New keys appended, every value grown (counters only grow), and maybe a dead process's files folded
        # into the archives as the master does (app/exposition.py).
        _write(directory, [(n, k, v + 1, s + 1) for n, k, v, s in entries])
        gone = data.draw(st.sampled_from([None, 11, 12, 13]))
        if gone is not None:
            fold_dead_worker(gone, str(directory))
        _same(_ours(merged, directory), _library(directory))


def test_an_empty_file_is_skipped_and_read_once_sized(tmp_path: Path):
    (tmp_path / "counter_7.db").touch()  # created, not yet sized by its worker
    merged = MergedFiles(str(tmp_path))
    assert merged.render(["counter_7.db"]) == ""
    (tmp_path / "counter_7.db").unlink()
    _write(tmp_path, [("counter_7.db", mmap_key("c", "c_total", ["a"], ["x"], "h"), 3.0, 0.0)])
    assert 'c_total{a="x"} 3.0' in merged.render(["counter_7.db"])


def test_a_counter_never_goes_down(tmp_path: Path):
    key = mmap_key("c", "c_total", [], [], "h")
    _write(tmp_path, [("counter_7.db", key, 5.0, 0.0), ("counter_8.db", key, 1.0, 0.0)])
    merged = MergedFiles(str(tmp_path))
    assert "c_total 6.0" in merged.render(["counter_7.db", "counter_8.db"])
    _write(tmp_path, [("counter_archive.db", key, 6.0 - 1e-12, 0.0)])  # folded: a sum regrouped, an ulp lower
    (tmp_path / "counter_7.db").unlink()
    (tmp_path / "counter_8.db").unlink()
    assert "c_total 6.0" in merged.render(["counter_archive.db"])


def test_a_damaged_file_ends_its_reading_without_looping(tmp_path: Path):
    # A key length that would send the reader backwards (a torn or damaged file): the keys before it are
    # served, the scrape returns, and nothing after the damage is read.
    key = mmap_key("c", "c_total", [], [], "h")
    _write(tmp_path, [("counter_7.db", key, 2.0, 0.0)])
    path = tmp_path / "counter_7.db"
    data = bytearray(path.read_bytes())
    used = struct.unpack_from("i", data, 0)[0]
    struct.pack_into("i", data, used, -100)  # an entry header past the last key, with a negative length
    struct.pack_into("i", data, 0, used + 64)
    path.write_bytes(bytes(data))
    rendered: list[str] = []
    reader = threading.Thread(
        target=lambda: rendered.append(MergedFiles(str(tmp_path)).render([path.name])), daemon=True
    )
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "the reader loops on a damaged file"
    assert "c_total 2.0" in rendered[0]
