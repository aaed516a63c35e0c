"""The Dockerfile built by a real OCI builder (podman), and the image run as the Deployment runs its container.

Building: `podman build` of the project's Dockerfile. Where its base image cannot be pulled (no registry
reachable), a stand-in is made from Debian's packages with debootstrap (same Debian release and Python minor
version as the official image; Python in /usr/bin instead of /usr/local/bin) and imported under the base's
name, labelled `STAND_IN_LABEL` so that anyone inspecting it (and every image built on it) can tell.

Running: `podman run` needs an OCI runtime that can set rlimits, which sandboxes may refuse. The image is
therefore run the way a runtime would, from its pieces: `podman image mount`, new mount and PID namespaces
(`unshare`), and `harness.confine` inside them, which mounts what the pod spec mounts, drops to the pod's
uid without capabilities and execs the image's command with its environment. `ContainerRun` is that spec,
read from the image's config and the rendered Deployment, never typed here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from declarations.paths import ROOT
from harness.pod_runtime import ContainerRun, ImageError, container_run
from harness.processes import children
from harness.server import free_port, wait_for

DOCKERFILE = ROOT / "Dockerfile"
# Builds without an OCI runtime (`--isolation chroot`) and without a CNI network (`--network host`), so they
# work in unprivileged sandboxes too; the base image must already be local (see `ensure_base`).
BUILD_FLAGS = ["--isolation", "chroot", "--network", "host", "--pull=never"]
# pip inside the build trusts what the host trusts (a proxy that re-signs TLS, a company CA).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STAND_IN_LABEL = "io.github.ml-observability.stand-in-base"
STAND_IN_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"


def podman(*args: str, timeout: float = 120, stdin: Any = None) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=stdin)
    if result.returncode != 0:
        raise ImageError(f"podman {shlex.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


# ---- the Dockerfile -------------------------------------------------------------------------------------------


def base_images(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The images the Dockerfile's stages start FROM (stage names excluded), in order, without duplicates."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        found = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not found:
            continue
        image, stage = found.group(1), found.group(2)
        if image not in stages and image not in bases:
            bases.append(image)
        if stage:
            stages.add(stage)
    return bases


def build_arg_default(name: str, dockerfile: Path = DOCKERFILE) -> list[str]:
    """The default of `ARG name=...`, split into words as the RUN that uses it unquoted splits it."""
    found = re.search(rf"^\s*ARG\s+{name}=(.*)$", dockerfile.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"the Dockerfile declares no `ARG {name}=...`")
    return shlex.split(shlex.split(found.group(1))[0] if found.group(1).strip() else "")


def qualified(image: str) -> str:
    """A short name as podman resolves it for a local lookup: `python:3.11` -> `docker.io/library/python:3.11`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


# ---- the base image -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    name: str
    origin: str  # how it got here: "local", "pulled", "stand-in (made)" or "stand-in (cached)"
    seconds: float  # time spent getting it in this session
    note: str = ""  # why a stand-in: what the pull answered, or what the cached stand-in's label says


def ensure_base(image: str, workdir: Path) -> Base:
    """The base image in local storage: already there, else pulled, else a stand-in made with debootstrap."""
    name = qualified(image)
    start = time.monotonic()
    if subprocess.run(["podman", "image", "exists", name], capture_output=True).returncode == 0:
        labels = json.loads(podman("image", "inspect", name))[0].get("Labels") or {}
        if STAND_IN_LABEL in labels:
            return Base(name, "stand-in (cached)", 0.0, labels[STAND_IN_LABEL])
        return Base(name, "local", 0.0)
    try:
        podman("pull", "--quiet", name, timeout=600)
        return Base(name, "pulled", time.monotonic() - start)
    except (ImageError, subprocess.TimeoutExpired) as pull_failed:
        reason = str(pull_failed).splitlines()[-1][:300]
    make_stand_in(name, workdir, because=reason)
    return Base(name, "stand-in (made)", time.monotonic() - start, reason)


def make_stand_in(name: str, workdir: Path, because: str) -> None:
    """`python:<X.Y>-slim-<suite>` rebuilt from Debian <suite>'s packages; refuses when the Python differs."""
    tag = name.rsplit(":", 1)[-1]
    found = re.fullmatch(r"(\d+\.\d+)(?:\.\d+)?-slim-(\w+)", tag)
    if not found or not name.rsplit(":", 1)[0].endswith("/python"):
        raise ImageError(f"{name} cannot be pulled ({because}) and only python:X.Y-slim-SUITE has a stand-in")
    python, suite = found.groups()
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageError(f"{name} cannot be pulled ({because}) and debootstrap is not installed to make a stand-in")
    rootfs = Path(tempfile.mkdtemp(prefix="stand-in-", dir=workdir))
    try:
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={STAND_IN_PACKAGES}", suite, str(rootfs)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise ImageError(f"debootstrap {suite} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        if not (rootfs / "usr" / "bin" / f"python{python}").exists():
            shipped = sorted(p.name for p in (rootfs / "usr" / "bin").glob("python3.*"))
            raise ImageError(f"Debian {suite} ships {shipped}, not the python{python} of {name}: no faithful stand-in")
        label = f"debootstrap --variant=minbase {suite} ({STAND_IN_PACKAGES}): {name} could not be pulled"
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            podman(
                "import",
                "--change",
                f"LABEL {STAND_IN_LABEL}={json.dumps(label)}",
                # What the official image sets too.
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["python3"]',
                "-",
                name,
                stdin=tar.stdout,
                timeout=600,
            )
        finally:
            tar.wait()
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


# ---- building -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    tag: str
    image_id: str
    seconds: float
    build_args: dict[str, str]
    steps: int  # Dockerfile steps run, over all stages
    cached_steps: int  # of which podman took the layer from its cache
    warnings: list[str]  # the builder's own warnings, such as an instruction it drops


def image_id(tag: str) -> str | None:
    result = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def build(tag: str, log: Path, build_args: dict[str, str] | None = None, context: Path = ROOT) -> Built:
    """`podman build -t TAG` of the Dockerfile; the image this tag named before is removed (no dangling images).

    Layers are cached by podman: a second build that differs only after some step reuses what came before it.
    """
    build_args = build_args or {}
    previous = image_id(tag)
    command = ["podman", "build", *BUILD_FLAGS, "-t", tag, "-f", str(context / "Dockerfile")]
    if HOST_CA_BUNDLE.is_file():
        command += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    for key, value in build_args.items():
        command += ["--build-arg", f"{key}={value}"]
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run([*command, str(context)], stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise ImageError(f"{shlex.join(command)} failed:\n{log.read_text()[-4000:]}")
    built = image_id(tag)
    if built is None:
        raise ImageError(f"podman build succeeded but {tag} is not in local storage")
    if previous and previous != built:
        subprocess.run(["podman", "rmi", previous], capture_output=True)
    output = log.read_text(errors="replace")
    steps = len(re.findall(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+:", output, re.MULTILINE))
    warnings = [line for line in output.splitlines() if "level=warning" in line]
    return Built(tag, built, seconds, build_args, steps, output.count("--> Using cache"), warnings)


def image_config(tag: str) -> dict[str, Any]:
    """The OCI config a runtime starts the image from: Env, Entrypoint, Cmd, WorkingDir, User, Labels."""
    return json.loads(podman("image", "inspect", tag))[0]["Config"]


# ---- running --------------------------------------------------------------------------------------------------


@dataclass
class RunningImage:
    tag: str
    process: subprocess.Popen  # `unshare`, whose only child is the container's first process
    app: str
    metrics: str
    log: Path
    spec: ContainerRun

    @property
    def pid(self) -> int:
        """The container's first process (PID 1 inside its namespace), as the host numbers it."""
        found = children(self.process.pid)
        if len(found) != 1:
            raise ImageError(f"expected one child of unshare ({self.process.pid}), found {sorted(found)}")
        return found.pop()

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        subprocess.run(["podman", "image", "unmount", self.tag], capture_output=True)
        return self.process.returncode


def run(tag: str, pod_spec: dict[str, Any], workdir: Path, timeout: float = 120.0) -> RunningImage:
    """Start the image as the pod spec's first container, on free ports of 127.0.0.1 (the host's network
    namespace is shared, so the app must not bind every address), and wait until /readyz answers 200."""
    rootfs = Path(podman("image", "mount", tag).strip())
    app_port, metrics_port = free_port(), free_port()
    try:
        spec = container_run(
            image_config(tag),
            pod_spec,
            rootfs,
            HOST="127.0.0.1",
            PORT=str(app_port),
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(metrics_port),
        )
        if not spec.read_only_root:
            raise ImageError("the pod spec leaves the root filesystem writable; an image mount here is read-only")
    except Exception:
        podman("image", "unmount", tag)
        raise
    spec_file = workdir / "container.json"
    spec_file.write_text(json.dumps({"image_root": str(rootfs), "root": str(workdir / "root"), **asdict(spec)}))
    (workdir / "root").mkdir(exist_ok=True)
    log = workdir / "container.log"
    namespaces = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--"]
    process = subprocess.Popen(
        [*namespaces, sys.executable, "-m", "harness.confine", str(spec_file)],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = RunningImage(
        tag, process, f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{metrics_port}/metrics", log, spec
    )
    try:
        wait_for(f"{running.app}/readyz", timeout=timeout, process=process)
    except Exception as failed:
        running.stop(timeout=5)
        raise ImageError(f"{tag} did not become ready ({failed}):\n{log.read_text(errors='replace')[-3000:]}") from None
    return running
