"""Folding a dead worker's histogram `_sum` into the archive must not make the exposed sum go down.

Float addition is not associative: the master exposes `(live + dead) + archive` before the fold and
`live + (archive + dead)` after it, and the two can differ in the last bit. Prometheus takes any decrease of
a counter-like sample for a reset, so `rate()` of the `_sum` jumps by the whole total for one window. The
churn test caught it live (`model_prediction_confidence_sum` went from 480.1111500334079 to
480.11115003340785); this reproduces it deterministically with real multiprocess files, the file order of a
tmpfs directory (newest first, the pod's `emptyDir: {medium: Memory}`) and the app's own exposition and fold.
"""

from __future__ import annotations

import glob as glob_module
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from app.exposition import fold_dead_worker, metrics_app
from harness.exposition import total

NAME = "model_prediction_confidence"
# Found by search: (L + D) + A > L + (A + D) in binary floating point.
LIVE, DEAD, ARCHIVE = 216.4, 347.916, 360.77
DEAD_PID, LIVE_PID = 1001, 1002


def _write(path: Path, value: float) -> None:
    values = MmapedDict(str(path))
    try:
        values.write_value(mmap_key(NAME, f"{NAME}_sum", (), (), "confidence"), value, 0.0)
    finally:
        values.close()


def _scrape() -> float:
    def start_response(status: str, headers: list) -> None:
        assert status.startswith("200"), status

    body = b"".join(metrics_app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, start_response))
    return total(body.decode(), f"{NAME}_sum")


@pytest.fixture()
def multiproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    created: list[str] = []
    real_glob = glob_module.glob

    def newest_first(pattern: str, *args, **kwargs) -> list[str]:
        found = real_glob(pattern, *args, **kwargs)
        return sorted(found, key=lambda f: -created.index(Path(f).name) if Path(f).name in created else 0)

    monkeypatch.setattr(glob_module, "glob", newest_first)
    for name, value in (("histogram_archive.db", ARCHIVE), (f"histogram_{DEAD_PID}.db", DEAD)):
        _write(tmp_path / name, value)
        created.append(name)
    _write(tmp_path / f"histogram_{LIVE_PID}.db", LIVE)
    created.append(f"histogram_{LIVE_PID}.db")
    return tmp_path


def test_the_exact_total_survives_the_fold_in_value(multiproc: Path):
    before = _scrape()
    fold_dead_worker(DEAD_PID, str(multiproc))
    after = _scrape()
    assert not (multiproc / f"histogram_{DEAD_PID}.db").exists()
    assert after == pytest.approx(before, rel=1e-15)  # the same total, to the last bits or so


def test_the_exposed_sum_never_goes_down_across_a_fold(multiproc: Path):
    before = _scrape()
    fold_dead_worker(DEAD_PID, str(multiproc))
    assert _scrape() >= before
