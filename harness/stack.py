"""Driving the local stack (`offcluster`) in end-to-end tests: time compressed, PromQL asked, locust run."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness.server import ROOT
from offcluster.stack import Stack

LOCUST = str(Path(sys.executable).with_name("locust"))
USERS = 8  # locust users per run


def compress_for(rules: dict) -> dict:
    rules = copy.deepcopy(rules)
    for group in rules["groups"]:
        group.pop("interval", None)
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    return rules


def compress_routing(config: dict) -> dict:
    config = copy.deepcopy(config)
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        route.update({k: "1s" for k in ("group_wait", "group_interval") if k in route or route is config["route"]})
        routes.extend(route.get("routes", []))
    return config


def query(stack: Stack, promql: str) -> list[dict]:
    response = requests.get(f"{stack.urls['prometheus']}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def scalar(stack: Stack, promql: str) -> float:
    result = query(stack, promql)
    assert len(result) == 1, f"{promql} -> {result}"
    return float(result[0]["value"][1])


def eventually(check, timeout: float = 30.0, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def run_locust(stack: Stack, out: Path, seconds: int, *extra: str, users: int = USERS) -> dict[str, int]:
    """A headless locust run (all users at once, for `seconds`); returns request counts by locust's request name,
    from the JSON locust writes when it quits (its CSV is rewritten every second only: a run stopped by `-t` may
    quit before the last rewrite)."""
    result = subprocess.run(
        [LOCUST, "--config", str(ROOT / "loadtest" / "locust.conf"), "--host", stack.urls["app"],
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(out), "--html", f"{out}.html",
         "--json-file", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {entry["name"]: entry["num_requests"] for entry in json.loads(Path(f"{out}.json").read_text())}
