"""Where a /predict request's time goes in THE gunicorn command: py-spy on one worker under wrk.

    python -m benchmarks.profile [--sizes 1 256] [--seconds 20] [--rate 500] [--against REF]

Starts THE gunicorn command (2 workers), drives it with wrk (`-t2 -c4`, keep-alive, as benchmarks.peers),
and samples one worker with py-spy (`pip install py-spy`: a profiler, not a dependency of the project). Idle
threads are left out (py-spy's own test, and samples whose innermost frame is a known wait: a pool thread
waiting for a request, the poller's epoll, the metrics flusher's sleep). Each sample is put in the
first category found walking from the innermost frame outwards, so a numpy call made by the model counts as
the model call, and what is left in Flask's own frames counts as Flask. `--against REF` profiles the `app/`
of a git ref the same way, for a before/after breakdown. Shares of samples, not times: under load the
samples stretch, the shares much less.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.drivers import WRK_SCRIPT
from benchmarks.peers import sample_rows
from benchmarks.process_tree import tree
from declarations.paths import ROOT
from harness.quiet import loadavg
from harness.server import start_server

# (category, regular expression on "function (file:line)"), tried in this order on each frame, innermost first.
CATEGORIES = [
    (
        "model call (predict_proba or its compiled path)",
        r"app/compiled_model\.py|/sklearn/|predict_proba|LoadedModel\.proba",
    ),
    ("input: JSON decode and validation", r"app/validation\.py|orjson.*loads|decode_json"),
    ("model bookkeeping (bins, labels, argmax)", r"app/model\.py"),
    (
        "metrics (prometheus_client, request and model metrics)",
        r"prometheus_client/|app/(pending|instrumentation|model_metrics|metrics)\.py",
    ),
    ("response: JSON encoding", r"app/json_provider\.py|orjson|jsonify|json/provider"),
    ("access log", r"gunicorn/glogging\.py|/logging/"),
    ("Flask and werkzeug (dispatch, context, request, response)", r"/flask/|/werkzeug/|app/(factory|routes)\.py"),
    ("gunicorn HTTP: parse request, write response", r"gunicorn/http/|gunicorn/util\.py"),
    ("gunicorn worker: poller, keep-alive hand-off, threads", r"gunicorn/|selectors|concurrent/futures"),
]


# Innermost frames that are a thread waiting, not working: py-spy cannot always tell (a wait inside C code
# looks busy to it) - a pool thread waiting for a request, the poller in epoll, the metrics flusher's sleep.
IDLE = re.compile(
    r"^(_worker \(.*concurrent/futures/thread\.py|\S*select \(.*selectors\.py|\S*_loop \(.*app/pending\.py)"
)


def categorise(raw: str) -> Counter:
    counts: Counter = Counter()
    compiled = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if IDLE.search(frames[-1]):
            continue
        for frame in reversed(frames):
            name = next((name for name, pattern in compiled if pattern.search(frame)), None)
            if name is not None:
                break
        else:
            name = "other"
        counts[name] += int(count)
    return counts


def profile(app_root: Path, size: int, seconds: float, rate: int, work: Path) -> tuple[Counter, str]:
    from app.train import train, write_artefact

    model = work / "model"
    if not model.exists():
        write_artefact(*train(), model)
    run = work / f"{app_root.name}-{size}"
    run.mkdir()
    server = start_server(run, model, workers=2) if app_root == ROOT else _start_at(app_root, run, model)
    try:
        import json

        body = run / "body.json"
        body.write_text(json.dumps({"instances": sample_rows(size)}))
        script = run / "body.lua"
        script.write_text(WRK_SCRIPT.format(body=body))
        url = f"{server.app}/predict"
        worker = next(pid for pid in tree(server.process.pid) if pid != server.process.pid)
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c4", f"-d{seconds + 4:.0f}s", "-s", str(script), url], stdout=subprocess.PIPE, text=True
        )
        time.sleep(2)
        before = loadavg()[0]
        out = run / "profile.txt"
        spy = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw"]
        spy += ["-r", str(rate), "-d", f"{seconds:.0f}", "-p", str(worker), "-o", str(out)]
        subprocess.run(spy, check=True, capture_output=True)
        wrk.wait()
        requests = re.search(r"Requests/sec:\s+([\d.]+)", wrk.stdout.read() if wrk.stdout else "")
        note = f"load {before:.2f} -> {loadavg()[0]:.2f}, {requests.group(1) if requests else '?'} req/s"
        return categorise(out.read_text()), note
    finally:
        server.stop()


def _start_at(app_root: Path, run: Path, model: Path):
    """THE gunicorn command with `app` taken from another tree (its gunicorn.conf.py too)."""
    import harness.server as server_module

    saved = server_module.ROOT
    server_module.ROOT = app_root
    try:
        return start_server(run, model, workers=2, config=app_root / "app" / "gunicorn.conf.py")
    finally:
        server_module.ROOT = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--against", metavar="REF", help="also profile app/ at this git ref")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-"))
    trees = {"this tree": ROOT}
    if args.against:
        ref_root = work / "ref"
        ref_root.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.against, "app"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(ref_root)], input=archive.stdout, check=True)
        trees[args.against] = ref_root
    results = {}
    for size in args.sizes:
        for name, root in trees.items():
            results[(name, size)] = profile(root, size, args.seconds, args.rate, work)
            print(f"  {name}, {size} rows: {results[(name, size)][1]}", flush=True)
    names = [name for name, _ in CATEGORIES] + ["other"]
    columns = list(results)
    print()
    print("| share of samples | " + " | ".join(f"{n}, {s} rows" for n, s in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for category in names:
        cells = []
        for key in columns:
            counts = results[key][0]
            cells.append(f"{100 * counts[category] / max(sum(counts.values()), 1):.1f} %")
        print(f"| {category} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(str(sum(results[k][0].values())) for k in columns) + " |")
    print("| run | " + " | ".join(results[k][1] for k in columns) + " |")


if __name__ == "__main__":
    main()
