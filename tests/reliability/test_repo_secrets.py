"""No secret is committed anywhere in the repository; the scanner is proven on planted samples first."""

from __future__ import annotations

from pathlib import Path

from harness.server import ROOT
from tests.reliability.secret_scan import RULES, repository_files, scan_files

# Planted secrets, assembled at run time so that this file itself holds none of them.
PLANTED = {
    "grafana chart default password": ("values.yaml", "grafana:\n  admin:\n    note: " + "prom-" + "operator\n"),
    "adminPassword with a literal value": ("values.txt", "grafana.admin" + "Password: hunter2\n"),
    "private key": ("id_rsa", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"),
    "AWS access key id": ("settings.py", "KEY = '" + "AKIA" + "IOSFODNN7EXAMPLE'\n"),
    "password with a literal value": ("db.yaml", "database:\n  user: app\n  pass" + "word: correct-horse\n"),
    "Secret object": ("secret.yaml", "apiVersion: v1\nkind: " + "Secret\nmetadata:\n  name: x\n"),
}
# Near misses: what the repository legitimately holds and the rules must not flag.
CLEAN = {
    "values.yaml": (
        "grafana:\n  admin"
        + "Password:\n  admin:\n    existingSecret: grafana-admin\n    passwordKey: admin-password\n"
        '  password: ${GRAFANA_PASSWORD}\n  db_password: ""\n  password: {{ .Values.p }}\n  password: # unset\n'
        "alertmanager:\n  url_file: /etc/alertmanager/secrets/url\n  password_file: /run/secrets/pw\n"
        "operator: prometheus-operator\nkind: SecretProviderClass\n"
    ),
    "notes.md": "The key AKIA1234 is too short; -----BEGIN PUBLIC KEY----- is public.\nadminPassword: <generated>\n",
}


def test_every_rule_catches_its_planted_secret(tmp_path: Path):
    assert set(PLANTED) == {rule for rule, _, _ in RULES}, "every rule needs a planted sample"
    for rule, (name, text) in PLANTED.items():
        planted = tmp_path / rule.replace(" ", "_") / name
        planted.parent.mkdir()
        planted.write_text(text)
        found = scan_files([planted], tmp_path)
        assert [f.rule for f in found] == [rule], (rule, [str(f) for f in found])


def test_near_misses_are_not_flagged(tmp_path: Path):
    files = []
    for name, text in CLEAN.items():
        (tmp_path / name).write_text(text)
        files.append(tmp_path / name)
    assert [str(f) for f in scan_files(files, tmp_path)] == []


def test_findings_point_at_the_line(tmp_path: Path):
    leaky = tmp_path / "deep.yaml"
    leaky.write_text("a: 1\nb:\n  c: 2\n  password: s3cr3t\n")
    assert [(f.path, f.line) for f in scan_files([leaky], tmp_path)] == [("deep.yaml", 4)]


def test_the_repository_holds_no_secret():
    files = repository_files(ROOT)
    # The scan sees the repository, and the files a cluster receives are among them (not hidden by .gitignore).
    scanned = {p.relative_to(ROOT).parts[0] for p in files}
    assert len(files) > 50 and {"manifests", "values", "helmfile.yaml", "kustomization.yaml"} <= scanned
    findings = scan_files(files, ROOT)
    assert [str(f) for f in findings] == []
