"""CPU of one POST /predict in-process, at 1 and 256 rows, and the instrumentation's share of it.

    python -m benchmarks.inprocess [--requests 2000] [--rounds 3] [--against REF]

No HTTP server and no client: each request is a WSGI call into the Flask app with a prebuilt environ, timed
with `time.thread_time_ns` (the CPU of this thread only). Two apps are built from the same model in one
process, one with metrics (prometheus_client in multiprocess mode, as under gunicorn) and one with
METRICS_ENABLED=0, and requests alternate between them one by one, so both see the same machine; the figures
are medians. `--against REF` also runs the same measurement on the `app/` of a git ref (e.g. `main`), in a
separate process, alternating rounds with this tree's, to show what a change did.

Each round records the load before and after it (harness/quiet.py): a round that starts with the 1-minute
load above 1.0 is flagged and the goal line reads "not measured".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from declarations.paths import ROOT
from harness.load import ROW
from harness.quiet import LOAD_LIMIT, SETTLE_SECONDS, LoadGuard

SIZES = (1, 256)


def wsgi_environ(body: bytes, path: str = "/predict") -> dict:
    """A POST of `body` to `path`, as gunicorn hands it to the app."""
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _call(app, body: bytes) -> int:
    """One request; returns its thread CPU in ns."""
    statuses = []
    started = time.thread_time_ns()
    result = app(wsgi_environ(body), lambda status, headers, exc_info=None: statuses.append(status))
    for _ in result:
        pass
    if hasattr(result, "close"):
        result.close()
    elapsed = time.thread_time_ns() - started
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"/predict answered {statuses[0]}")
    return elapsed


class _NoUpdates:
    """While active, every prometheus_client value update (inc, set; observe goes through them) does nothing."""

    def __init__(self) -> None:
        from prometheus_client import values

        self.cls = values.ValueClass
        self.saved = (self.cls.inc, self.cls.set)

    def __enter__(self) -> None:
        self.cls.inc = self.cls.set = lambda *args, **kwargs: None

    def __exit__(self, *exc) -> None:
        self.cls.inc, self.cls.set = self.saved


def measure(requests: int) -> dict[str, dict[str, float]]:
    """Runs in a process whose `app` package is the one to measure; returns medians in µs by size and mode.

    Modes, alternated request by request: "on" (metrics on), "noop" (the same app with every prometheus_client
    update made a no-op: what the updates themselves cost) and "off" (METRICS_ENABLED=0: no instrumentation
    code at all).
    """
    from app.factory import create_app
    from app.train import train, write_artefact

    model_dir = Path(tempfile.mkdtemp(prefix="inprocess-model-"))
    write_artefact(*train(), model_dir)
    on = create_app(model_dir, instrumented=True)
    apps = {"on": on, "noop": on, "off": create_app(model_dir, instrumented=False)}
    no_updates = _NoUpdates()
    out = {}
    for rows in SIZES:
        body = json.dumps({"instances": [ROW] * rows}).encode()
        for app in apps.values():  # warm: first-call costs, caches, the flusher thread started
            for _ in range(50):
                _call(app, body)
        times: dict[str, list[int]] = {mode: [] for mode in apps}
        modes = list(apps)
        for i in range(requests):
            # Rotate the order, so that none always runs right after the same other one.
            for mode in modes[i % 3 :] + modes[: i % 3]:
                if mode == "noop":
                    with no_updates:
                        times[mode].append(_call(apps[mode], body))
                else:
                    times[mode].append(_call(apps[mode], body))
        median = {mode: statistics.median(t) / 1000 for mode, t in times.items()}
        out[str(rows)] = {
            "on_us": median["on"],
            "off_us": median["off"],
            "updates_share": (median["on"] - median["noop"]) / median["on"],
            "code_share": (median["on"] - median["off"]) / median["on"],
        }
    return out


def _worker_main(requests: int) -> None:
    # As THE gunicorn config does: prometheus_client in multiprocess mode on a memory filesystem, one BLAS thread.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="inprocess-multiproc-", dir=shm)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    print(json.dumps(measure(requests)))


def _run(app_root: Path, requests: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(app_root)}
    script = f"import sys; sys.path.insert(0, {str(app_root)!r}); from benchmarks.inprocess import _worker_main; "
    script += f"_worker_main({requests})"
    # The benchmarks package comes from this tree, `app` from app_root (first on sys.path).
    env["PYTHONPATH"] = os.pathsep.join([str(app_root), str(ROOT)])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per size and mode in one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", metavar="REF", help="also measure app/ at this git ref, alternating rounds")
    parser.add_argument(
        "--settle",
        type=float,
        default=SETTLE_SECONDS,
        metavar="SECONDS",
        help=f"before each round, wait up to this long for the 1-minute load to fall under {LOAD_LIMIT}",
    )
    args = parser.parse_args()

    trees = {"this tree": ROOT}
    if args.against:
        ref_root = Path(tempfile.mkdtemp(prefix="inprocess-ref-"))
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.against, "app"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(ref_root)], input=archive.stdout, check=True)
        trees[args.against] = ref_root
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    guard = LoadGuard(settle_seconds=args.settle)
    for round_ in range(args.rounds):
        names = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
        for name in names:
            with guard.round(f"round {round_ + 1}, {name}") as measured:
                runs[name].append(_run(trees[name], args.requests))
            print(f"  round {round_ + 1}, {name}: {measured.describe()}", flush=True)

    print(f"in-process POST /predict, {args.rounds} rounds x {args.requests} requests per size and mode (medians)")
    print(f"{'app':<12}{'rows':>6}{'CPU us/req':>12}{'metrics off':>13}{'share: updates':>16}{'all metrics code':>18}")
    for name, rounds in runs.items():
        for rows in map(str, SIZES):
            on = statistics.median(r[rows]["on_us"] for r in rounds)
            off = statistics.median(r[rows]["off_us"] for r in rounds)
            updates = statistics.median(r[rows]["updates_share"] for r in rounds)
            code = statistics.median(r[rows]["code_share"] for r in rounds)
            print(f"{name:<12}{rows:>6}{on:>12.0f}{off:>13.0f}{100 * updates:>15.1f}%{100 * code:>17.1f}%")
    print(
        "share: updates = CPU of prometheus_client's value updates (made no-ops in alternate requests) / request CPU;"
        "\n       all metrics code = (metrics on - METRICS_ENABLED=0) / metrics on"
    )
    if args.against:
        for rows in map(str, SIZES):
            now = statistics.median(r[rows]["on_us"] for r in runs["this tree"])
            before = statistics.median(r[rows]["on_us"] for r in runs[args.against])
            print(f"{rows:>3} row(s), metrics on: this tree / {args.against} = {now / before:.3f}")
    print(f"machine during the rounds: {guard.summary()}")
    for rows in map(str, SIZES):
        updates = statistics.median(r[rows]["updates_share"] for r in runs["this tree"])
        print(
            f"goal: prometheus_client updates <= 3 % of request CPU at {rows} row(s): "
            f"{guard.verdict(updates <= 0.03)} ({100 * updates:.1f} %)"
        )


if __name__ == "__main__":
    main()
