"""The model version names the training inputs, so it is the same on every machine; the fitted floats are not.

OpenBLAS picks its kernel by CPU unless OPENBLAS_CORETYPE forces one, and the kernel moves the last bits of the
fitted coefficients. Training in subprocesses with the variable unset and set to other kernels stands in for
other machines: the version must not move, and the answers may move only within rounding.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.model import METADATA_FILE, MODEL_FILE, load
from app.train import main, model_version, wine

ROOT = Path(__file__).resolve().parents[2]
# Kernels of the same architecture with different vector widths (and so different summation orders). OpenBLAS
# falls back to the detected kernel for a name it does not know, so a wrong guess only weakens the test.
CORETYPES = {"x86_64": ["Haswell", "Nehalem"], "aarch64": ["ARMV8", "NEOVERSEN1"], "arm64": ["ARMV8", "NEOVERSEN1"]}
# Predictions of models trained with different kernels: measured differences are around 1e-15.
TOLERANCE = 1e-9


def _train(out: Path, coretype: str | None, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}}
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run(
        [sys.executable, "-m", "app.train", "--out", str(out), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return json.loads((out / METADATA_FILE).read_text())


@pytest.mark.parametrize("args", [[], ["--seed", "7"]], ids=["stable", "canary"])
def test_the_version_is_the_same_whichever_blas_kernel_trained_the_model(tmp_path: Path, args: list[str]):
    kernels = [None, *CORETYPES.get(platform.machine(), [])]
    trained = {kernel: _train(tmp_path / str(kernel), kernel, *args) for kernel in kernels}
    versions = {kernel: metadata["version"] for kernel, metadata in trained.items()}
    assert len(set(versions.values())) == 1, versions

    rows = wine().data
    answers = {kernel: load(tmp_path / str(kernel)).predict(rows) for kernel in kernels}
    reference = answers[None]
    for kernel, answer in answers.items():
        assert np.allclose(answer.probabilities, reference.probabilities, rtol=0, atol=TOLERANCE), kernel
        assert answer.labels == reference.labels, kernel
    # Whether the bits differed here depends on the CPU (they do on one with AVX-512): shown, not asserted.
    digests = {kernel: (tmp_path / str(kernel) / MODEL_FILE).read_bytes() for kernel in kernels}
    print(f"\nkernels {kernels}: version {versions[None]}, {len(set(digests.values()))} distinct model files")


def test_the_version_is_the_hash_of_the_recorded_inputs_and_moves_with_each(model_dir: Path, tmp_path: Path):
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    inputs = metadata["training_inputs"]
    assert model_version(inputs) == metadata["version"]
    assert len(metadata["version"]) == 12 and int(metadata["version"], 16) >= 0
    # Each kind of input, changed alone, gives another version.
    changes = {
        "seed": lambda i: i.update(seed=7),
        "data": lambda i: i["dataset"].update(contents_sha256="0" * 64),
        "hyper-parameter": lambda i: i["pipeline"][-1][1].update(C=0.5),
        "drift bins": lambda i: i["drift"].update(bins_per_feature=10),
        "library minor": lambda i: i["libraries"].update({"scikit-learn": "9.9"}),
        "recipe": lambda i: i.update(recipe=i["recipe"] + 1),
    }
    seen = {metadata["version"]}
    for change in changes.values():
        edited = json.loads(json.dumps(inputs))
        change(edited)
        seen.add(model_version(edited))
    assert len(seen) == 1 + len(changes)


def test_options_that_change_the_model_change_the_version(model_dir: Path, tmp_path: Path):
    default = json.loads((model_dir / METADATA_FILE).read_text())["version"]
    main(["--out", str(tmp_path / "drift"), "--drift-features", "5"])
    assert json.loads((tmp_path / "drift" / METADATA_FILE).read_text())["version"] != default
