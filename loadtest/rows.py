"""The rows a client sends: the wine data set with a little noise, as the load test and the detection simulator
both draw them (one place for the data and the noise)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_wine

_WINE = load_wine()
FEATURES: list[str] = list(_WINE.feature_names)
DATA: np.ndarray = _WINE.data
TARGET: np.ndarray = _WINE.target
CLASSES: list[str] = [str(c) for c in _WINE.target_names]
STD: np.ndarray = DATA.std(axis=0)
# Noise added to every value, in training standard deviations: rows near the data, never the same row twice.
NOISE_SD = 0.05


def noisy_rows(rng: np.random.Generator, n: int, shift: np.ndarray | float = 0.0) -> tuple[np.ndarray, list[str]]:
    """n rows drawn from the data set with noise (plus `shift`), rounded to 4 decimals, and each row's class."""
    picked = rng.integers(0, len(DATA), n)
    rows = DATA[picked] + rng.normal(0.0, NOISE_SD, (n, len(FEATURES))) * STD + shift
    return np.round(rows, 4), [CLASSES[t] for t in TARGET[picked]]
