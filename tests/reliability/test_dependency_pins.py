"""A fresh machine installs what CI tested: requirements.lock pins every package exactly, covers every
dependency pyproject.toml declares (runtime and dev) at a version the declaration accepts, and covers what
those pull in as well (the closure, read from the installed packages' metadata)."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from harness.processes import report
from harness.server import ROOT

LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.!+_-]+)$")


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(LOCK.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        found = PIN.match(line)
        assert found, f"requirements.lock:{number}: {raw!r} is not an exact pin (name==version)"
        name = canonicalize_name(found["name"])
        assert name not in pins, f"requirements.lock:{number}: {name} pinned twice"
        pins[name] = Version(found["version"])
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts.extend(extra)
    return [Requirement(text) for text in texts]


def test_the_lock_pins_every_package_exactly():
    assert LOCK.is_file(), "requirements.lock is missing"
    assert len(locked()) >= 10


def test_every_declared_dependency_is_pinned_at_an_accepted_version():
    pins = locked()
    problems = []
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in requirements.lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"requirements.lock pins {name}=={pins[name]}, pyproject.toml wants {requirement}")
    assert problems == []


def test_the_lock_covers_the_whole_dependency_closure():
    pins = locked()
    environment = default_environment()
    seen: set[str] = set()
    missing: list[str] = []
    todo = [(requirement, "pyproject.toml") for requirement in declared()]
    while todo:
        requirement, wanted_by = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        if name not in pins:
            missing.append(f"{name} (needed by {wanted_by})")
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: its own pin was checked above, its closure cannot be read
        for text in requires:
            child = Requirement(text)
            # Only what installs without extras on this platform and Python (the lock is for this target).
            if child.marker is None or child.marker.evaluate({**environment, "extra": ""}):
                todo.append((child, name))
    report("pins", locked=len(pins), declared=len(declared()), closure=len(seen))
    assert missing == [], "requirements.lock is incomplete: a fresh install would pick these freely"
    assert len(seen) >= len(declared())
