"""What a Deployment's pod spec asks of the container runtime, worked out as a kubelet would: the user and
group, the environment (literal values and Secrets), the read-only root, and a tmpfs for each volume and for
/dev/shm.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Kubernetes mounts this tmpfs in every container (the runtime's default size); it is not a pod volume.
DEV_SHM = "/dev/shm"
DEV_SHM_BYTES = 64 * 1024 * 1024


class ImageError(RuntimeError):
    """An image that cannot be built, or a pod spec this harness cannot run as the kubelet would."""


@dataclass
class Tmpfs:
    path: str
    size_bytes: int | None
    mode: str  # octal
    gid: int | None = None
    read_only: bool = False


@dataclass
class ContainerRun:
    """Everything `harness.confine` needs; built from the image's config and the pod spec."""

    argv: list[str]
    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    read_only_root: bool
    drop_all_capabilities: bool
    no_new_privileges: bool
    tmpfs: list[Tmpfs] = field(default_factory=list)


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def image_of(deployment: dict[str, Any]) -> str:
    """The image the Deployment's first container runs (the tag a build must produce)."""
    return pod_spec(deployment)["containers"][0]["image"]


def quantity(text: str | int | float) -> float:
    """A Kubernetes resource quantity (`2`, `250m`, `64Mi`, `1G`) as a number."""
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    found = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    if not found or found.group(2) not in {"", *suffixes}:
        raise ImageError(f"not a resource quantity this harness reads: {text!r}")
    return float(found.group(1)) * suffixes.get(found.group(2), 1)


def _env_value(item: dict[str, Any], container: dict[str, Any]) -> str:
    if "value" in item:
        return str(item["value"])
    ref = (item.get("valueFrom") or {}).get("resourceFieldRef")
    if ref is None:
        raise ImageError(f"env {item['name']}: only literal values and resourceFieldRef are resolved here")
    kind, _, resource = ref["resource"].partition(".")
    amount = quantity(container["resources"][kind][resource])
    # The kubelet rounds up to a whole number of divisors.
    return str(math.ceil(amount / quantity(ref.get("divisor", "1"))))


def _home(rootfs: Path, uid: int) -> str:
    """HOME as runtimes set it: the uid's entry in the image's /etc/passwd, else /."""
    passwd = rootfs / "etc" / "passwd"
    for line in passwd.read_text().splitlines() if passwd.is_file() else []:
        fields = line.split(":")
        if len(fields) > 5 and fields[2] == str(uid):
            return fields[5]
    return "/"


def container_run(config: dict[str, Any], pod_spec: dict[str, Any], rootfs: Path, **env_overrides: str) -> ContainerRun:
    """The pod's first container as a runtime would start it from this image (`env_overrides` last)."""
    container = pod_spec["containers"][0]
    pod_security = pod_spec.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    user, _, group = (config.get("User") or "0").partition(":")
    uid = int(security.get("runAsUser", user))
    gid = int(security.get("runAsGroup", group or 0))
    groups = [g for g in [pod_security.get("fsGroup"), *pod_security.get("supplementalGroups", [])] if g is not None]
    capabilities = security.get("capabilities") or {}
    if capabilities.get("add"):
        raise ImageError(f"added capabilities are not granted here: {capabilities['add']}")

    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    env.setdefault("HOME", _home(rootfs, uid))
    for item in container.get("env", []):
        secret = (item.get("valueFrom") or {}).get("secretKeyRef")
        if secret is not None and secret.get("optional"):
            # No Secret exists here: the kubelet leaves an optional secret's variable unset, and so does this.
            continue
        env[item["name"]] = _env_value(item, container)
    env.update(env_overrides)

    # Kubernetes: `command` replaces the image's ENTRYPOINT, `args` its CMD.
    entrypoint = container.get("command", config.get("Entrypoint") or [])
    cmd = container.get("args", [] if "command" in container else config.get("Cmd") or [])

    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    tmpfs = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" not in volume:
            raise ImageError(f"volume {mount['name']}: only emptyDir volumes are mounted here")
        limit = (volume["emptyDir"] or {}).get("sizeLimit")
        # Every emptyDir becomes a tmpfs here (a disk-backed one has no other place on a read-only root); the
        # kubelet makes it group-owned by fsGroup and group-writable, setgid, as below.
        tmpfs.append(
            Tmpfs(
                path=mount["mountPath"],
                size_bytes=int(quantity(limit)) if limit else None,
                mode="2777" if pod_security.get("fsGroup") is not None else "0777",
                gid=pod_security.get("fsGroup"),
                read_only=bool(mount.get("readOnly")),
            )
        )
    tmpfs.append(Tmpfs(path=DEV_SHM, size_bytes=DEV_SHM_BYTES, mode="1777"))
    return ContainerRun(
        argv=[*entrypoint, *cmd],
        env=env,
        workdir=config.get("WorkingDir") or "/",
        uid=uid,
        gid=gid,
        groups=groups,
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        drop_all_capabilities="ALL" in (capabilities.get("drop") or []),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        tmpfs=tmpfs,
    )
