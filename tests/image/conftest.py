"""The image built from the Dockerfile by podman and run as the Deployment runs it: once per session, e2e.

The build and run figures (base image origin, build times, served versions) are printed in the terminal
summary, with or without `-s`, so that a `make test` log carries them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from declarations.manifests import CANARY, MANIFESTS, one, render
from harness import image
from harness.pod_runtime import image_of, pod_spec
from offcluster.pods import train_args
from tests.availability import unavailable
from tests.image.figures import SUMMARY, note

STABLE = "wine-classifier"
CANARY_DEPLOYMENT = "wine-classifier-canary"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.write_sep("-", "the image, built and run (tests/image)")
        for line in SUMMARY:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def podman_ready() -> None:
    if shutil.which("podman") is None:
        unavailable("podman is not on PATH: `apt-get install podman debootstrap` (Debian) builds and runs the image")
    if os.geteuid() != 0:
        unavailable("running the image as the Deployment does needs root (mount and PID namespaces, chroot)")


@pytest.fixture(scope="session")
def stable_deployment() -> dict:
    return one(render(MANIFESTS), "Deployment", STABLE)


@pytest.fixture(scope="session")
def canary_deployment() -> dict:
    return one(render(CANARY), "Deployment", CANARY_DEPLOYMENT)


@pytest.fixture(scope="session")
def image_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image")


@pytest.fixture(scope="session")
def base(podman_ready, image_workdir: Path) -> list[image.Base]:
    """Every base the Dockerfile starts FROM, in local storage (a stand-in when the registry cannot be reached)."""
    bases = []
    for name in image.base_images():
        try:
            got = image.ensure_base(name, image_workdir)
        except image.ImageError as failed:
            unavailable(str(failed))
        bases.append(got)
        why = f": {got.note}" if got.note else ""
        note(f"base {got.name}: {got.origin} in {got.seconds:.0f} s{why}")
    return bases


def _build(deployment: dict, build_args: dict[str, str], workdir: Path) -> image.Built:
    tag = image_of(deployment)
    built = image.build(tag, workdir / f"build-{tag.replace(':', '_').replace('/', '_')}.log", build_args)
    args = " ".join(f"--build-arg {k}={shlex.quote(v)}" for k, v in build_args.items()) or "no build args"
    cached = f"{built.cached_steps} of {built.steps} steps from podman's layer cache"
    note(f"built {tag} in {built.seconds:.1f} s ({args}; {cached}), image {built.image_id[:12]}")
    return built


@pytest.fixture(scope="session")
def stable_image(base, stable_deployment: dict, image_workdir: Path) -> image.Built:
    return _build(stable_deployment, {}, image_workdir)


@pytest.fixture(scope="session")
def canary_image(stable_image, canary_deployment: dict, image_workdir: Path) -> image.Built:
    """Built after the stable image, so it reuses every layer before the training step."""
    return _build(canary_deployment, {"TRAIN_ARGS": shlex.join(train_args(canary_deployment))}, image_workdir)


@pytest.fixture(scope="module")
def stable(stable_image: image.Built, stable_deployment: dict, tmp_path_factory) -> Iterator[image.RunningImage]:
    running = image.run(stable_image.tag, pod_spec(stable_deployment), tmp_path_factory.mktemp("stable"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def canary(canary_image: image.Built, canary_deployment: dict, tmp_path_factory) -> Iterator[image.RunningImage]:
    running = image.run(canary_image.tag, pod_spec(canary_deployment), tmp_path_factory.mktemp("canary"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory):
    """The artefact `python -m app.train ARGS` writes on this host: what an image built with those args must serve,
    the same version and, within rounding, the same answers (the fitted bits differ with the BLAS kernel)."""

    def train(args: list[str]) -> Path:
        out = tmp_path_factory.mktemp("train")
        subprocess.run([sys.executable, "-m", "app.train", "--out", str(out), *args], check=True, capture_output=True)
        return out

    return train
