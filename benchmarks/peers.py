"""This service next to the model servers a user would pick instead, serving the same model file, in one run.

    python -m benchmarks.peers [--seconds 10] [--rounds 3] [--sizes 1 256] [--connections 4] [--threads 2]
                               [--servers this kserve mlserver] [--variant NAME=GUNICORN_CMD_ARGS ...]
    make bench-peers

- this: THE gunicorn command (app/gunicorn.conf.py: 2 workers here, gthread with 4 threads each), every metric
  on, access log on.
- kserve: KServe 0.21's Python model server, a minimal sklearn `kserve.Model` in the shape of KServe's own
  sklearnserver (benchmarks/peer_servers/kserve_sklearn.py), V1 protocol, `--workers 2` (uvicorn processes).
- mlserver: MLServer 1.7.1 with mlserver-sklearn, V2 protocol with `predict_proba` requested,
  `parallel_workers: 2` (inference processes behind one HTTP front process).

The peers go into their own virtualenvs under $PEERS_DIR (default .state/peers; created once, minutes the
first time), never into the project's. MLServer 1.7.1 needs uvloop 0.21.0 to start its inference workers
(SeldonIO/MLServer#2286). scikit-learn, numpy and joblib are pinned to requirements.lock in all three, so the
one joblib file written by `python -m app.train` loads the same everywhere. Every server listens on 127.0.0.1
only (checked from /proc before any load is sent).

Load: wrk (`apt-get install wrk`) with keep-alive connections, or, where wrk is missing, a Python keep-alive
client in one process per connection (slower: it saturates sooner); the output says which. Each round runs
every server once per batch size, in a rotating order, so that none always runs on a warmer or busier machine;
the figures are medians over rounds. Before the load, the 256-row answers of all servers are compared.
The guard (harness/quiet.py): before each run, the benchmark waits (up to `--settle` seconds) for the 1-minute
load to fall under 1.0; it prints the load before and after every run and the CPU other processes used
meanwhile. A run that started above 1.0 is flagged, and every goal line then reads "not measured": a ratio
taken on a busy machine is not evidence. The per-round ratio spread says how much rounds disagreed.
Goals: >= 1.10x KServe's req/s at 1 row and rows/s at 256 rows, and a p99 no higher than KServe's at both.
`--variant` adds this project under other gunicorn settings, e.g. `--variant sync="--worker-class sync"`
(leading `VAR=value` words set the server's environment: `--variant t1="WEB_CONCURRENCY=1 --threads 8"`):
that is how the worker model was chosen (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from declarations.paths import ROOT
from harness.quiet import LOAD_LIMIT, SETTLE_SECONDS, LoadGuard
from harness.server import free_port

PEERS_DIR = Path(os.environ.get("PEERS_DIR", ROOT / ".state" / "peers"))
MODEL_NAME = "wine"
WORKERS = 2


def _locked(*names: str) -> list[str]:
    """`name==version` lines of requirements.lock for these packages: the model must load the same everywhere."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name = line.partition("==")[0]
        pins[name.strip().lower().replace("_", "-")] = line.strip()
    return [pins[name] for name in names]


SHARED = _locked("scikit-learn", "numpy", "joblib")
REQUIREMENTS = {
    "kserve": ["kserve==0.21.0", *SHARED],
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", *SHARED],
}


def ensure_venv(name: str) -> Path:
    """The peer's virtualenv, created or updated when its requirements changed; returns its bin/."""
    venv = PEERS_DIR / name
    marker = venv / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS[name]) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return venv / "bin"
    print(f"installing {name} into {venv} (once; a few minutes): {' '.join(REQUIREMENTS[name])}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS[name]], check=True)
    marker.write_text(wanted)
    return venv / "bin"


# ---- the servers -------------------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    description: str
    process: subprocess.Popen
    url: str  # the predict endpoint
    ready_url: str
    body: Callable[[list[list[float]]], bytes]
    probabilities: Callable[[dict], np.ndarray]
    log: Path
    bodies: dict[int, Path] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _spawn(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS"}}
    # One BLAS thread per process everywhere, as app/gunicorn.conf.py sets for this project.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    return env


def _v1_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"instances": rows}).encode()


def start_this(work: Path, model: Path, name: str = "this", gunicorn_args: str = "") -> Peer:
    port, metrics_port = free_port(), free_port()
    env = _env(
        HOST="127.0.0.1",
        PORT=str(port),
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(metrics_port),
        MODEL_DIR=str(model),
        WEB_CONCURRENCY=str(WORKERS),
    )
    # Leading VAR=value words are the server's environment (settings read by app/gunicorn.conf.py); the rest
    # is GUNICORN_CMD_ARGS.
    words = gunicorn_args.split()
    while words and re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", words[0]):
        var, _, value = words.pop(0).partition("=")
        env[var] = value
    if words:
        env["GUNICORN_CMD_ARGS"] = " ".join(words)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    process = _spawn([gunicorn, "-c", "app/gunicorn.conf.py", "app.wsgi:app"], work / f"{name}.log", ROOT, env)
    return Peer(
        name=name,
        description=f"THE gunicorn command, {WORKERS} workers, {gunicorn_args or 'gthread, 4 threads (config)'}",
        process=process,
        url=f"http://127.0.0.1:{port}/predict",
        ready_url=f"http://127.0.0.1:{port}/readyz",
        body=_v1_body,
        probabilities=lambda answer: np.asarray(answer["probabilities"]),
        log=work / f"{name}.log",
    )


def start_kserve(work: Path, model: Path) -> Peer:
    bin_dir = ensure_venv("kserve")
    port, grpc_port = free_port(), free_port()
    script = ROOT / "benchmarks" / "peer_servers" / "kserve_sklearn.py"
    command = [str(bin_dir / "python"), str(script), "--model_dir", str(model), "--http_port", str(port)]
    command += ["--grpc_port", str(grpc_port), "--workers", str(WORKERS)]
    process = _spawn(command, work / "kserve.log", work, _env())
    return Peer(
        name="kserve",
        description=f"KServe 0.21 Python server, sklearn kserve.Model, --workers {WORKERS}",
        process=process,
        url=f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}:predict",
        ready_url=f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}",
        body=_v1_body,
        probabilities=lambda answer: np.asarray(answer["predictions"]),
        log=work / "kserve.log",
    )


def start_mlserver(work: Path, model: Path) -> Peer:
    bin_dir = ensure_venv("mlserver")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    root = work / "mlserver"
    (root / MODEL_NAME).mkdir(parents=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": WORKERS,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model / "model.joblib")},
    }
    (root / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings))
    process = _spawn([str(bin_dir / "mlserver"), "start", str(root)], work / "mlserver.log", root, _env())

    def body(rows: list[list[float]]) -> bytes:
        flat = [v for row in rows for v in row]
        inputs = [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": flat}]
        return json.dumps({"inputs": inputs, "outputs": [{"name": "predict_proba"}]}).encode()

    def probabilities(answer: dict) -> np.ndarray:
        output = answer["outputs"][0]
        return np.asarray(output["data"]).reshape(output["shape"])

    return Peer(
        name="mlserver",
        description=f"MLServer 1.7.1 + mlserver-sklearn, V2, parallel_workers {WORKERS}",
        process=process,
        url=f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer",
        ready_url=f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready",
        body=body,
        probabilities=probabilities,
        log=work / "mlserver.log",
    )


def _host_port_path(url: str) -> tuple[str, int, str]:
    rest = url.split("://", 1)[1]
    address, _, path = rest.partition("/")
    host, port = address.rsplit(":", 1)
    return host, int(port), "/" + path


def _request(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    host, port, path = _host_port_path(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if body is None:
            connection.request("GET", path)
        else:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(peer: Peer, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.process.returncode}; see {peer.log}")
        try:
            if _request(peer.ready_url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{peer.name} not ready after {timeout:.0f}s; see {peer.log}")


# ---- the process tree: CPU, memory, listening sockets ------------------------------------------------------


def tree(root: int) -> list[int]:
    """The pid and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def cpu_seconds(root: int) -> float:
    ticks = 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(root: int) -> float:
    kib = 0
    for pid in tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        kib += int(match.group(1)) if match else 0
    return kib / 1024


def listening_addresses(root: int) -> set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """(address, port) of every TCP socket the process tree listens on, from /proc/net/tcp and tcp6."""
    inodes = set()
    for pid in tree(root):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((ipaddress.ip_address(raw), int(port, 16)))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


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
    host, port, path = _host_port_path(url)
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


# ---- the run -----------------------------------------------------------------------------------------------


def check_answers(peers: list[Peer], rows: list[list[float]]) -> str:
    answers = {}
    for peer in peers:
        status, payload = _request(peer.url, peer.body(rows))
        if status != 200:
            raise RuntimeError(f"{peer.name} answered {status}: {payload[:300]!r}")
        answers[peer.name] = peer.probabilities(json.loads(payload))
    first = next(iter(answers.values()))
    for name, probabilities in answers.items():
        if probabilities.shape != first.shape or (probabilities.argmax(1) != first.argmax(1)).any():
            raise RuntimeError(f"{name} disagrees with {peers[0].name} on the predicted classes")
    spread = max(float(np.abs(p - first).max()) for p in answers.values())
    return f"{len(rows)} rows: the same class for every row from all {len(peers)}; probabilities within {spread:.1e}"


def sample_rows(n: int) -> list[list[float]]:
    """n rows around the wine data (deterministic), so that all three classes occur."""
    from sklearn.datasets import load_wine

    data = load_wine().data
    picked = data[np.arange(n) * 7 % len(data)]
    return [[float(v) for v in row] for row in picked]


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}, load {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one measuring run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 256], help="rows per request")
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections (wrk -c)")
    parser.add_argument("--threads", type=int, default=2, help="load generator threads (wrk -t)")
    parser.add_argument("--servers", nargs="+", default=["this", "kserve", "mlserver"])
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='this project again under other gunicorn settings, e.g. sync="--worker-class sync"',
    )
    parser.add_argument("--install-only", action="store_true", help="create the peers' virtualenvs and stop")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help=f"before each run, wait up to this long for the 1-minute load to fall under {LOAD_LIMIT} (0: never wait)",
    )
    args = parser.parse_args()

    if args.install_only:
        for name in ("kserve", "mlserver"):
            ensure_venv(name)
        return
    generator = run_wrk if shutil.which("wrk") else run_python_client
    if generator is run_wrk:
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
        load = f"{version}, -t{args.threads} -c{args.connections}, keep-alive"
    else:
        load = f"Python keep-alive client (wrk not found), {args.connections} processes"
    print(f"machine: {machine()}")
    print(f"load: {load}, {args.seconds:.0f}s per run, {args.rounds} rounds, servers in rotating order (medians)")

    work = Path(tempfile.mkdtemp(prefix="peers-"))
    model = work / "model"
    subprocess.run([sys.executable, "-m", "app.train", "--out", str(model)], cwd=ROOT, check=True, capture_output=True)
    starters: dict[str, Callable[[], Peer]] = {
        "this": lambda: start_this(work, model),
        "kserve": lambda: start_kserve(work, model),
        "mlserver": lambda: start_mlserver(work, model),
    }
    for variant in args.variant:
        name, _, gunicorn_args = variant.partition("=")
        starters[name] = lambda name=name, gunicorn_args=gunicorn_args: start_this(work, model, name, gunicorn_args)
    peers: list[Peer] = []
    try:
        for name in [*args.servers, *(v.partition("=")[0] for v in args.variant)]:
            peers.append(starters[name]())
        for peer in peers:
            wait_ready(peer)
            addresses = listening_addresses(peer.process.pid)
            shown = ", ".join(sorted(f"{address}:{port}" for address, port in addresses))
            if not addresses or not all(is_loopback(address) for address, _ in addresses):
                raise RuntimeError(f"{peer.name} listens beyond the loopback interface: {shown}")
            print(f"  {peer.name:<10} {peer.description}; listens on {shown}")
        print("answers: " + check_answers(peers, sample_rows(256)))
        for size in args.sizes:
            rows = sample_rows(size)
            for peer in peers:
                peer.bodies[size] = work / f"{peer.name}-{size}.json"
                peer.bodies[size].write_bytes(peer.body(rows))
                for _ in range(20):  # warm every worker's first-call paths
                    _request(peer.url, peer.body(rows))

        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        guard = LoadGuard(settle_seconds=args.settle)
        for round_ in range(args.rounds):
            for size in args.sizes:
                shift = round_ % len(peers)
                for peer in peers[shift:] + peers[:shift]:
                    with guard.round(f"round {round_ + 1}, {size} rows, {peer.name}") as measured:
                        cpu_before = cpu_seconds(peer.process.pid)
                        result = generator(peer.url, peer.bodies[size], args.seconds, args.connections, args.threads)
                        cpu = cpu_seconds(peer.process.pid) - cpu_before
                    result["cpu_ms"] = 1000 * cpu / max(result["requests"], 1)
                    result["rss_mib"] = rss_mib(peer.process.pid)
                    result["rows_per_s"] = result["rps"] * size
                    result["round"] = round_ + 1
                    result["load_before"], result["load_after"] = measured.before[0], measured.after[0]
                    result["foreign_cpus"] = measured.foreign_cpus
                    result["busy"] = measured.busy
                    if result["failed"]:
                        raise RuntimeError(f"{peer.name}: {result['failed']} failed requests at {size} rows")
                    runs.setdefault((peer.name, size), []).append(result)
                    print(
                        f"  round {round_ + 1}, {size:>3} rows, {peer.name:<10} {result['rps']:>7.0f} req/s, "
                        f"p99 {result['p99_ms']:6.2f} ms; {measured.describe()}",
                        flush=True,
                    )
        report(peers, args.sizes, runs, guard)
    finally:
        for peer in peers:
            peer.stop()


GOAL_RATIO = 1.10  # at least this multiple of KServe's req/s (1 row) and rows/s (256 rows)
NUMERIC = ("rps", "rows_per_s", "p50_ms", "p99_ms", "cpu_ms", "rss_mib")


def report(peers: list[Peer], sizes: list[int], runs: dict, guard: LoadGuard) -> None:
    median = {key: {k: statistics.median(r[k] for r in rs) for k in NUMERIC} for key, rs in runs.items()}
    print()
    print("Every run, with the 1-minute load before and after it and the CPUs other processes used meanwhile:")
    print()
    print("| round | rows/request | server | req/s | p99 ms | load before | load after | other CPUs | |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for (name, size), results in sorted(runs.items(), key=lambda item: (item[0][1], item[0][0])):
        for r in results:
            flag = f"busy (> {LOAD_LIMIT})" if r["busy"] else ""
            print(
                f"| {r['round']} | {size} | {name} | {r['rps']:.0f} | {r['p99_ms']:.2f} | {r['load_before']:.2f} | "
                f"{r['load_after']:.2f} | {r['foreign_cpus']:.2f} | {flag} |"
            )
    print()
    print("| server | rows/request | req/s | rows/s | p50 ms | p99 ms | server CPU ms/request | RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for peer in peers:
            m = median[(peer.name, size)]
            print(
                f"| {peer.name} | {size} | {m['rps']:.0f} | {m['rows_per_s']:.0f} | {m['p50_ms']:.2f} | "
                f"{m['p99_ms']:.2f} | {m['cpu_ms']:.2f} | {m['rss_mib']:.0f} |"
            )
    print()
    print(f"machine during the runs: {guard.summary()}")
    names = [p.name for p in peers]
    if "this" not in names:
        return
    for other in (n for n in names if n != "this"):
        for size in sizes:
            this, them = median[("this", size)], median[(other, size)]
            # Each round ran both servers back to back: the spread of the per-round ratios says how far one
            # round's machine differed from another's.
            pairs = list(zip(runs[("this", size)], runs[(other, size)], strict=True))
            ratios = [a["rps"] / b["rps"] for a, b in pairs]
            cpu_ratios = [a["cpu_ms"] / b["cpu_ms"] for a, b in pairs]
            print(
                f"this / {other} at {size:>3} rows: throughput {this['rps'] / them['rps']:.2f}x "
                f"(per round {min(ratios):.2f}x to {max(ratios):.2f}x), "
                f"server CPU per request {this['cpu_ms'] / them['cpu_ms']:.2f}x "
                f"(per round {min(cpu_ratios):.2f}x to {max(cpu_ratios):.2f}x), "
                f"p50 {this['p50_ms'] / them['p50_ms']:.2f}x, p99 {this['p99_ms'] / them['p99_ms']:.2f}x"
            )
    if "kserve" in names and {1, 256} <= set(sizes):
        print()
        for size, figure in ((1, "rps"), (256, "rows_per_s")):
            this, them = median[("this", size)], median[("kserve", size)]
            ratio = this[figure] / them[figure]
            unit = "req/s" if figure == "rps" else "rows/s"
            print(
                f"goal: >= {GOAL_RATIO:.2f}x KServe's {unit} at {size} row(s): "
                f"{guard.verdict(ratio >= GOAL_RATIO)} ({ratio:.2f}x)"
            )
            print(
                f"goal: p99 <= KServe's at {size} row(s): {guard.verdict(this['p99_ms'] <= them['p99_ms'])} "
                f"({this['p99_ms']:.2f} ms against {them['p99_ms']:.2f} ms)"
            )


if __name__ == "__main__":
    main()
