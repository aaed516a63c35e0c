"""Minutes of each kind of traffic, sampled from the real service: lanes of kinds, each on its own gunicorn."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detection.scenarios import CANARY_WORSE, HEALTHY, KINDS, POD_HEALTHY, POOL, POOL_DEFAULT, QUIET
from detection.traffic import Sample, Traffic, gauges, sample_minutes

# -- sampling the real service ------------------------------------------------------------------------------


@dataclass
class Pools:
    """Sampled minutes per kind of traffic, and the series state of a fresh service."""

    start: Sample
    gauges: set[str]
    minutes: dict[Traffic, list[Sample]] = field(default_factory=dict)


# Kinds sampled one after the other on one service; lanes run side by side, each on its own service, so that
# one lane's wait for the input-bin flush overlaps another's requests.
LANES = ((HEALTHY, POD_HEALTHY), (QUIET, KINDS[6], *KINDS[7:10]), KINDS[3:6], (KINDS[2],), (CANARY_WORSE,))


def sample_pools(model_dir: Path, workdir: Path, seed: int = 1) -> Pools:
    from app.train import train, write_artefact
    from harness.server import start_server

    empty = workdir / "no-model"
    empty.mkdir(parents=True, exist_ok=True)
    assert {kind for lane in LANES for kind in lane} == set(KINDS)
    assert all(len({(k.model, k.estimator) for k in lane}) == 1 for lane in LANES), "one model per lane"
    models = {"": model_dir}
    for estimator in {k.estimator for k in KINDS} - {""}:
        models[estimator] = workdir / f"model-{estimator}"
        write_artefact(*train(estimator=estimator), models[estimator])

    def lane(index: int) -> tuple[Sample, set[str], dict[Traffic, list[Sample]]]:
        kinds = LANES[index]
        directory = workdir / f"lane{index}"
        directory.mkdir(parents=True, exist_ok=True)
        server = start_server(directory, models[kinds[0].estimator] if kinds[0].model else empty, workers=2)
        try:
            rng = np.random.default_rng([seed, index])
            first = gauges(server.metrics)
            start: Sample = {}
            minutes = {}
            for kind in kinds:
                begin, minutes[kind] = sample_minutes(
                    server.app, server.metrics, kind, POOL.get(kind, POOL_DEFAULT), rng
                )
                start = start or begin
            return start, first, minutes
        finally:
            server.stop(signal.SIGKILL, timeout=5)

    with ThreadPoolExecutor(max_workers=len(LANES)) as pool:
        lanes = list(pool.map(lane, range(len(LANES))))
    pools = Pools(start=lanes[0][0], gauges=lanes[0][1])
    for _, _, minutes in lanes:
        pools.minutes.update(minutes)
    return pools
