"""Train the wine classifier and write the artefact the server loads.

    python -m app.train --out model/
    python -m app.train --out model-canary/ --seed 7                # another split and initialisation
    python -m app.train --out model-stump/ --estimator stump        # a deliberately weak model

Deterministic: the same arguments and library versions give byte-identical files and therefore the same
version; any other seed or estimator gives another model and so another version.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from app.model import METADATA_FILE, MODEL_FILE

log = logging.getLogger("app.train")

DATASET = "sklearn.datasets.load_wine"
SEED = 42
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


def train(seed: int = SEED, estimator: str = DEFAULT_ESTIMATOR) -> tuple[Pipeline, dict]:
    """The model and its metadata; `seed` drives the train/test split and the estimator's randomness."""
    data = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=seed, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), ESTIMATORS[estimator](seed))
    model.fit(x_train, y_train)
    features = []
    for j, name in enumerate(data.feature_names):
        edges, ratios = reference_bins(x_train[:, j])
        features.append({"name": name, "bin_edges": edges, "bin_ratios": ratios})
    class_counts = np.bincount(y_train, minlength=len(data.target_names))
    metadata = {
        "name": f"wine-{estimator}",
        "dataset": DATASET,
        "feature_names": list(data.feature_names),
        "class_names": [str(c) for c in data.target_names],
        "accuracy": round(float(model.score(x_test, y_test)), 6),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "reference": {
            "features": features,
            "class_ratios": [float(c) / len(y_train) for c in class_counts],
        },
    }
    return model, metadata


def write_artefact(model: Pipeline, metadata: dict, out: Path) -> dict:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    blob = buffer.getvalue()
    # The version covers everything that changes answers or metrics: the model and its reference data.
    digest = hashlib.sha256(blob)
    digest.update(json.dumps([metadata["feature_names"], metadata["class_names"], metadata["reference"]]).encode())
    metadata = {
        **metadata,
        "version": digest.hexdigest()[:12],
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    metadata = write_artefact(*train(args.seed, args.estimator), args.out)
    log.info(
        "wrote %s version %s (held-out accuracy %.3f) to %s",
        metadata["name"],
        metadata["version"],
        metadata["accuracy"],
        args.out,
    )


if __name__ == "__main__":
    main()
