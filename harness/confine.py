"""Inside fresh mount and PID namespaces (`unshare --mount --pid --fork`), become the container a runtime would
start, then exec its command: `python -m harness.confine SPEC.json` (harness.image writes SPEC and starts this).

As root, before the exec:
- the image's root filesystem bound onto an empty directory, read-only when the pod spec says so;
- /dev as runtimes make it (a tmpfs with null, zero, full, random, urandom bound from the host), /proc of the
  new PID namespace, and a tmpfs for each of the spec's volumes and for /dev/shm;
- chroot into it, the working directory of the image;
- the capability bounding set emptied (`drop: [ALL]`), the pod's uid, gid and supplementary groups, which
  clears the permitted and effective sets, and no_new_privs (`allowPrivilegeEscalation: false`).
Every mount lives in this namespace only: it disappears with the container's last process.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def tmpfs(target: Path, mode: str, size_bytes: int | None = None, gid: int | None = None, ro: bool = False) -> None:
    if not target.is_dir():
        # A runtime creates missing mount points before it makes the root read-only; an image mount cannot be
        # written, so the image must have them (the Dockerfile creates the multiprocess directory).
        raise SystemExit(f"confine: {target} is not a directory in the image: it cannot be a mount point here")
    options = ["nosuid", "nodev", f"mode={mode}"]
    options += [f"size={size_bytes}"] if size_bytes else []
    options += [f"gid={gid}"] if gid is not None else []
    options += ["ro"] if ro else []
    mount("-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target))


def build_root(spec: dict) -> Path:
    root = Path(spec["root"])
    mount("--bind", spec["image_root"], str(root))
    dev = root / "dev"
    tmpfs(dev, "0755")
    for name in DEVICES:
        (dev / name).touch()
        mount("--bind", f"/dev/{name}", str(dev / name))
    for name, target in DEV_LINKS.items():
        (dev / name).symlink_to(target)
    (dev / "shm").mkdir()
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    for volume in spec["tmpfs"]:
        target = root / volume["path"].lstrip("/")
        tmpfs(target, volume["mode"], volume["size_bytes"], volume["gid"], volume["read_only"])
    if spec["read_only_root"]:
        # Only the root's own mount turns read-only; the tmpfs mounts on it stay writable.
        mount("-o", "remount,bind,ro", str(root))
    return root


def become(spec: dict) -> None:
    libc = ctypes.CDLL(None, use_errno=True)

    def prctl(option: int, arg: int) -> None:
        if libc.prctl(option, arg, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl({option}, {arg})")

    if spec["drop_all_capabilities"]:
        for capability in range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1):
            prctl(PR_CAPBSET_DROP, capability)
    os.setgroups(spec["groups"])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    # From uid 0 to another uid: the kernel clears the permitted and effective capability sets.
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    if spec["no_new_privileges"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1)


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text())
    root = build_root(spec)
    os.chroot(root)
    os.chdir(spec["workdir"])
    become(spec)
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv[1:])
