"""The load: wrk with keep-alive connections, or, without wrk, a Python keep-alive client in as many processes."""

from __future__ import annotations

import http.client
import multiprocessing
import re
import subprocess
import time
from pathlib import Path

from benchmarks.servers import host_port_path

# ---- load --------------------------------------------------------------------------------------------------


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, body: Path, seconds: float, connections: int, threads: int) -> dict[str, float]:
    script = body.with_suffix(".lua")
    script.write_text(WRK_SCRIPT.format(body=body))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    latency = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.M))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "requests": requests,
        "failed": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": 1000 * _seconds(latency["50"]),
        "p99_ms": 1000 * _seconds(latency["99"]),
    }


def _keepalive_client(args: tuple[str, bytes, float]) -> tuple[list[float], int]:
    url, body, seconds = args
    host, port, path = host_port_path(url)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    latencies, failed = [], 0
    deadline = time.perf_counter() + seconds
    while (started := time.perf_counter()) < deadline:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            failed += 1
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30)
        latencies.append(time.perf_counter() - started)
    connection.close()
    return latencies, failed


def run_python_client(url: str, body: Path, seconds: float, connections: int, threads: int) -> dict[str, float]:
    with multiprocessing.Pool(connections) as pool:
        results = pool.map(_keepalive_client, [(url, body.read_bytes(), seconds)] * connections)
    latencies = sorted(latency for result in results for latency in result[0])
    return {
        "requests": len(latencies),
        "failed": sum(result[1] for result in results),
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }
