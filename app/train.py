"""Train the wine classifier and write the artefact the server loads.

    python -m app.train --out model/
    python -m app.train --out model-canary/ --seed 7                # another split and initialisation
    python -m app.train --out model-stump/ --estimator stump        # a deliberately weak model
    python -m app.train --out model-500/ --dataset synthetic --features 500 [--classes 3]   # any width

The model version names the training INPUTS, not the fitted bytes: the data set (its generator call and, for
wine, a digest of its values), the estimator's class and every constructor parameter, the seed, the split, the
drift-bin settings and the major.minor versions of scikit-learn, NumPy and SciPy (`training_inputs` in the
metadata holds exactly what was hashed). The same arguments give the same version on any machine. The fitted
floats do not repeat bit for bit across machines: OpenBLAS picks its kernel by CPU (AVX-512 or not, x86-64 or
arm64), and the last bits of coefficients and bin edges move with it, so predictions agree within rounding, not to
the bit. Any other seed, estimator, data set or library minor gives another version.

`model_sha256` in the metadata is the digest of the model file as written here: the loader checks it before it
unpickles anything, so a model file that is not the one trained with this metadata is never served.

Drift bins cost series on every pod (docs/scale.md): a model wider than `--drift-features` (default
DRIFT_FEATURES) gets reference bins, and so drift monitoring, only for that many features, the ones the model
leans on most (`importances`); the choice is recorded in the artefact (`drift_features`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import load_wine, make_classification
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from app.model import METADATA_FILE, MODEL_FILE

log = logging.getLogger("app.train")

DATASET = "sklearn.datasets.load_wine"
SEED = 42
TEST_SIZE = 0.25
# Raise when a change to this module makes other models, or other reference data, from the same inputs (another
# preprocessing step, another way to choose bins): the version must then change although no argument did.
RECIPE = 1
# The libraries whose minor releases change what training produces: scikit-learn (estimators, defaults, data
# generators), SciPy (the L-BFGS solver behind LogisticRegression) and NumPy (quantiles, random streams). Patch
# releases fix bugs without changing results by design; joblib and Python only store and run the model.
BEHAVIOUR_LIBRARIES = ("scikit-learn", "numpy", "scipy")
# The synthetic set is one fixed data set whatever --seed says (which, as for wine, picks the split and the
# estimator's randomness): a canary of a synthetic model sees the same rows as its stable model.
SYNTHETIC_SEED = 0
SYNTHETIC_ROWS = 2000
# Feature columns that move the label in the synthetic set: a tenth of them, and never fewer than the classes
# need (make_classification puts each class's cluster at a vertex of a hypercube of that many dimensions).
SYNTHETIC_INFORMATIVE_SHARE = 0.1
# At most this many features carry drift bins: 2 x 5 bins x 100 = 1 000 drift series per pod, which keeps a
# model of up to 16 classes under 1 500 series per pod in all (docs/scale.md has the formula). Wine's 13 are
# all monitored.
DRIFT_FEATURES = 100
IMPORTANCE_REPEATS = 5
# What a canary can differ by. `stump` (one split) cannot tell three classes apart: it is the model a canary
# test rolls out when the comparison with stable must find it worse.
ESTIMATORS = {
    "logreg": lambda seed: LogisticRegression(max_iter=1000, random_state=seed),
    "stump": lambda seed: DecisionTreeClassifier(max_depth=1, random_state=seed),
}
DEFAULT_ESTIMATOR = "logreg"
# PSI between two samples of the SAME distribution is biased upwards by about (bins - 1) / rows of the
# smaller sample. Wine trains on 133 rows: 10 bins would put stable traffic near 0.07, too close to the
# 0.1 warning line; 5 bins keep it near 0.03 and still put a 3-sigma shift far above 0.25.
BINS_PER_FEATURE = 5


def reference_bins(column: np.ndarray, bins: int = BINS_PER_FEATURE) -> tuple[list[float], list[float]]:
    """Quantile bin edges of one training column and the share of training rows in each bin.

    Edges are the interior cut points; the first and last bins are open so every input lands somewhere.
    Repeated quantiles (integer-valued features) collapse, so a feature may get fewer bins.
    """
    edges = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
    return [float(e) for e in edges], [float(c) / len(column) for c in counts]


@dataclass(frozen=True)
class Dataset:
    description: str
    name: str
    data: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    # A digest of the values, where they are the same bits on every machine (parsed from a file, not computed).
    contents_sha256: str | None = None


def values_digest(data: np.ndarray, target: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(target, dtype="<i8").tobytes())
    return digest.hexdigest()


def wine() -> Dataset:
    data = load_wine()
    classes = [str(c) for c in data.target_names]
    digest = values_digest(data.data, data.target)
    return Dataset(DATASET, "wine", data.data, data.target, list(data.feature_names), classes, digest)


def synthetic(features: int, classes: int = 3) -> Dataset:
    """A classification set of any width from scikit-learn's generator, the same for the same arguments."""
    if features < 2 or classes < 2:
        raise ValueError("a synthetic data set needs at least 2 features and 2 classes")
    informative = min(features, max(math.ceil(math.log2(2 * classes)), round(features * SYNTHETIC_INFORMATIVE_SHARE)))
    data, target = make_classification(
        n_samples=SYNTHETIC_ROWS,
        n_features=features,
        n_informative=informative,
        n_redundant=0,
        n_classes=classes,
        random_state=SYNTHETIC_SEED,
    )
    digits = len(str(features - 1))
    # No digest of the values: make_classification mixes its columns with a matrix product, whose last bits
    # depend on the BLAS kernel. The call below (every argument, its seed included) is the data set's identity.
    return Dataset(
        f"sklearn.datasets.make_classification(n_samples={SYNTHETIC_ROWS}, n_features={features}, "
        f"n_informative={informative}, n_redundant=0, n_classes={classes}, random_state={SYNTHETIC_SEED})",
        f"synthetic{features}x{classes}",
        data,
        target,
        [f"f{j:0{digits}d}" for j in range(features)],
        [f"class_{k}" for k in range(classes)],
    )


def importances(model: Pipeline, x_test: np.ndarray, y_test: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """How much the model leans on each column, and how that was measured.

    The estimator's own weights where it has them, as scikit-learn's SelectFromModel reads them: the size of
    the coefficients on the standardised inputs, or a tree's impurity importances. Anything else: permutation
    importance on the held-out split (a model call per feature and repeat: minutes at 500 features)."""
    estimator = model[-1]
    if hasattr(estimator, "coef_"):
        return np.abs(estimator.coef_).sum(axis=0), "sum of |coefficients| over classes, on standardised inputs"
    if hasattr(estimator, "feature_importances_"):
        return estimator.feature_importances_, "impurity-based feature importances"
    result = permutation_importance(model, x_test, y_test, n_repeats=IMPORTANCE_REPEATS, random_state=seed)
    return result.importances_mean, f"permutation importance on the held-out split ({IMPORTANCE_REPEATS} repeats)"


def drift_columns(importance: np.ndarray, limit: int) -> list[int]:
    """The columns that get drift bins: all of them up to `limit`, else the `limit` the model leans on most
    (ties, such as features a model ignores, go to the lower column), in column order.

    Importance to the model, not to the label: a shift in a feature the model does not use cannot change its
    answers, and one it leans on is what a drift alert is for."""
    if len(importance) <= limit:
        return list(range(len(importance)))
    ranked = sorted(range(len(importance)), key=lambda j: (-importance[j], j))
    return sorted(ranked[:limit])


def train(
    seed: int = SEED,
    estimator: str = DEFAULT_ESTIMATOR,
    dataset: Dataset | None = None,
    drift_features: int = DRIFT_FEATURES,
) -> tuple[Pipeline, dict]:
    """The model and its metadata; `seed` drives the train/test split and the estimator's randomness."""
    data = dataset or wine()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=TEST_SIZE, random_state=seed, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), ESTIMATORS[estimator](seed))
    inputs = training_inputs(model, data, estimator, seed, drift_features)
    model.fit(x_train, y_train)
    columns = list(range(len(data.feature_names)))
    if len(columns) > drift_features:
        importance, chosen_by = importances(model, x_test, y_test, seed)
        columns = drift_columns(importance, drift_features)
    features = []
    for j in columns:
        edges, ratios = reference_bins(x_train[:, j])
        features.append({"name": data.feature_names[j], "bin_edges": edges, "bin_ratios": ratios})
    class_counts = np.bincount(y_train, minlength=len(data.class_names))
    metadata = {
        "name": f"{data.name}-{estimator}",
        "version": model_version(inputs),
        "dataset": data.description,
        "feature_names": data.feature_names,
        "class_names": data.class_names,
        "accuracy": round(float(model.score(x_test, y_test)), 6),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "reference": {
            "features": features,
            "class_ratios": [float(c) / len(y_train) for c in class_counts],
        },
    }
    if len(columns) < len(data.feature_names):
        # Only when some features go unmonitored, so that a model that monitors all of them (wine) keeps
        # exactly the metadata it always had.
        metadata["drift_features"] = {
            "monitored": len(columns),
            "of": len(data.feature_names),
            "chosen_by": chosen_by,
        }
    metadata["training_inputs"] = inputs
    return model, metadata


def _parameter(value: Any) -> Any:
    # Constructor parameters are plain values in practice; anything else is named by its repr.
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def training_inputs(model: Pipeline, data: Dataset, estimator: str, seed: int, drift_features: int) -> dict[str, Any]:
    """Everything that decides what training produces, as plain JSON; `model` is the pipeline before `fit`."""
    return {
        "recipe": RECIPE,
        "dataset": {"call": data.description, "contents_sha256": data.contents_sha256},
        "split": {"test_size": TEST_SIZE, "stratify": True, "random_state": seed},
        "estimator": estimator,
        "pipeline": [
            [
                f"{type(step).__module__}.{type(step).__qualname__}",
                {k: _parameter(v) for k, v in sorted(params.items())},
            ]
            for step, params in ((step, step.get_params(deep=False)) for _, step in model.steps)
        ],
        "seed": seed,
        "drift": {
            "bins_per_feature": BINS_PER_FEATURE,
            "max_features": drift_features,
            "importance_repeats": IMPORTANCE_REPEATS,
        },
        "libraries": {name: ".".join(installed_version(name).split(".")[:2]) for name in BEHAVIOUR_LIBRARIES},
    }


def model_version(inputs: dict[str, Any]) -> str:
    """12 hex characters of the SHA-256 of the inputs as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def write_artefact(model: Pipeline, metadata: dict, out: Path) -> dict:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    blob = buffer.getvalue()
    metadata = {
        **metadata,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_FILE).write_bytes(blob)
    # Metadata last: the loader treats its presence as "the artefact is complete".
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("model"), help="directory for the artefact")
    parser.add_argument("--seed", type=int, default=SEED, help="train/test split and estimator seed")
    parser.add_argument("--estimator", choices=sorted(ESTIMATORS), default=DEFAULT_ESTIMATOR, help="model family")
    parser.add_argument("--dataset", choices=("wine", "synthetic"), default="wine", help="training data")
    parser.add_argument("--features", type=int, default=100, help="columns of the synthetic data set")
    parser.add_argument("--classes", type=int, default=3, help="classes of the synthetic data set")
    parser.add_argument(
        "--drift-features",
        type=int,
        default=DRIFT_FEATURES,
        help="at most this many features carry drift bins (the most important ones)",
    )
    args = parser.parse_args(argv)
    if args.drift_features < 1:
        parser.error("--drift-features must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    dataset = synthetic(args.features, args.classes) if args.dataset == "synthetic" else wine()
    metadata = write_artefact(*train(args.seed, args.estimator, dataset, args.drift_features), args.out)
    log.info(
        "wrote %s version %s (held-out accuracy %.3f) to %s",
        metadata["name"],
        metadata["version"],
        metadata["accuracy"],
        args.out,
    )


if __name__ == "__main__":
    main()
