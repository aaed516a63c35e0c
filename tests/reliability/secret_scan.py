"""A small scanner for the secrets that must never be committed: the chart's old default Grafana password, a
literal adminPassword value, private keys, AWS access key ids, `password: <literal>` in YAML, Secret objects.

Deliberately simple (regular expressions over text files) so that its verdicts are easy to check; the tests
run it on planted samples first, so a rule that stopped matching would be noticed.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

YAML_SUFFIXES = {".yaml", ".yml"}
MAX_BYTES = 2 * 1024 * 1024

# A value that is not a literal: empty, null, a comment, a template or variable, a <placeholder>.
_NOT_LITERAL = r"""(?:$|\#|""|''|~|null\b|\{\{|\$\{|\$\w|<)"""

# (name, pattern, applies to YAML files only)
RULES: tuple[tuple[str, re.Pattern[str], bool], ...] = (
    # Assembled so that this file does not hold the password it looks for (a `+`, which formatters keep).
    ("grafana chart default password", re.compile("prom-" + "operator"), False),
    ("adminPassword with a literal value", re.compile(rf"(?m)adminPassword[ \t]*:[ \t]*(?!{_NOT_LITERAL})\S"), False),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), False),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), False),
    (
        "password with a literal value",
        # A key that ends in "password" (password, adminPassword, auth_password), not passwordKey/password_file.
        re.compile(rf"""(?im)^[ \t]*-?[ \t]*["']?[\w.-]*password["']?[ \t]*:[ \t]*(?!{_NOT_LITERAL})\S"""),
        True,
    ),
    ("Secret object", re.compile(r"(?m)^kind:\s*[\"']?Secret[\"']?\s*$"), True),
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def scan_text(text: str, name: str, yaml: bool) -> list[Finding]:
    findings = []
    for rule, pattern, yaml_only in RULES:
        if yaml_only and not yaml:
            continue
        for match in pattern.finditer(text):
            findings.append(Finding(name, text.count("\n", 0, match.start()) + 1, rule))
    return findings


def scan_files(paths: Iterable[Path], root: Path) -> list[Finding]:
    findings = []
    for path in paths:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (images): no text secret to find
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        findings.extend(scan_text(data.decode("utf-8", errors="replace"), name, path.suffix in YAML_SUFFIXES))
    return findings


def repository_files(root: Path) -> list[Path]:
    """What git tracks, plus what it would track (untracked and not ignored): everything a commit can carry."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return sorted({root / name for name in result.stdout.decode().split("\0") if name})
