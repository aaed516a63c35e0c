"""CPU of feedback receipts: issuing one per /predict answer, and checking and spending them in /feedback.

    python -m benchmarks.receipts [--requests 1000] [--rounds 3]

In-process, as `benchmarks.inprocess`: each request is a WSGI call into the instrumented app (prometheus_client
in multiprocess mode on /dev/shm, as under THE gunicorn config), timed with `time.thread_time_ns` (this
thread's CPU) and `time.process_time_ns` (the whole process: the metrics flusher thread too). Requests
rotate one by one between the app's real receipts and two stand-ins that issue a constant string, take any
receipt and record nothing (one with an empty receipt, one with a receipt as long as a real one), so every
variant sees the same machine; figures are medians.

- /predict at 1 and 256 rows: what issuing the batch's receipt costs (HMAC, nonce, encoding).
- /feedback of 1 item and of 256 items (every row of one 256-row receipt): what checking the receipt and
  recording its rows in the pod's spent set (SQLite on /dev/shm) cost. Each real request spends a receipt
  issued beforehand, outside the timing.

Goal: receipts add at most 3 % of a /predict request's CPU at 256 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.inprocess import wsgi_environ
from harness.load import ROW
from harness.quiet import SETTLE_SECONDS, LoadGuard

GOAL_SHARE = 0.03


def _call(app, path: str, body: bytes) -> tuple[int, int]:
    """One request; its thread and process CPU in ns."""
    statuses: list[str] = []
    thread, process = time.thread_time_ns(), time.process_time_ns()
    result = app(wsgi_environ(body, path), lambda status, headers, exc_info=None: statuses.append(status))
    for _ in result:
        pass
    if hasattr(result, "close"):
        result.close()
    thread, process = time.thread_time_ns() - thread, time.process_time_ns() - process
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"{path} answered {statuses[0]}")
    return thread, process


class _Free:
    """The receipts' interface doing no work: the baseline the real receipts are compared with. ``sized``: its
    constant receipt is as long as a real one (what the computing costs, apart from the bytes carried); else
    empty (no receipt to carry either)."""

    def __init__(self, real, version: str, rows: int, sized: bool) -> None:
        issued = real.issue(version, np.zeros(rows, dtype=np.int64), 3)
        self.constant = "x" * len(issued) if sized else ""
        self.receipt = real.verify(issued)

    def issue(self, version, classes, n_classes) -> str:
        return self.constant

    def verify(self, text, now=None):
        return self.receipt

    def spend(self, items) -> None:
        return None


def _bodies(path: str, rows: int, real, free: dict[str, _Free], version: str, requests: int) -> dict:
    """Each variant's next request body."""
    if path == "/predict":
        body = json.dumps({"instances": [ROW] * rows}).encode()
        return {mode: (lambda: body) for mode in ("real", *free)}

    def feedback_body(receipt: str) -> bytes:
        items = [{"receipt": receipt, "row": row, "actual": "class_0"} for row in range(rows)]
        return json.dumps({"feedback": items}).encode()

    # Receipts for the real variant, issued beforehand: each is spent once.
    issued = iter([real.issue(version, np.zeros(rows, dtype=np.int64), 3) for _ in range(requests + 50)])
    fixed = {mode: feedback_body(stub.constant) for mode, stub in free.items()}
    return {"real": lambda: feedback_body(next(issued)), **{mode: (lambda b=b: b) for mode, b in fixed.items()}}


def measure(requests: int) -> dict[str, dict[str, float]]:
    from app.factory import create_app
    from app.train import train, write_artefact

    model_dir = Path(tempfile.mkdtemp(prefix="receipts-model-"))
    write_artefact(*train(), model_dir)
    app = create_app(model_dir, instrumented=True)
    state = app.extensions["model_state"]
    real, version = state.receipts, state.model.version
    out: dict[str, dict[str, float]] = {}
    cases = [("/predict", 1), ("/predict", 256), ("/feedback", 1), ("/feedback", 256)]
    for path, rows in cases:
        free = {"none": _Free(real, version, rows, sized=False), "sized": _Free(real, version, rows, sized=True)}
        bodies = _bodies(path, rows, real, free, version, requests)
        receipts = {"real": real, **free}
        modes = list(receipts)
        for mode in modes * 25:  # warm: first-call costs, caches, the flusher thread started
            state.receipts = receipts[mode]
            _call(app, path, bodies[mode]())
        times: dict[str, list[tuple[int, int]]] = {mode: [] for mode in modes}
        for i in range(requests):
            # Rotate the order, so that none always runs right after the same other one.
            for mode in modes[i % 3 :] + modes[: i % 3]:
                body_bytes = bodies[mode]()
                state.receipts = receipts[mode]
                times[mode].append(_call(app, path, body_bytes))
        state.receipts = real
        thread = {m: statistics.median(t for t, _ in v) / 1000 for m, v in times.items()}
        process = {m: statistics.median(p for _, p in v) / 1000 for m, v in times.items()}
        out[f"{path} {rows}"] = {
            "real_us": thread["real"],
            "none_us": thread["none"],
            "thread_ratio": thread["real"] / thread["none"],
            "process_ratio": process["real"] / process["none"],
            "compute_ratio": thread["real"] / thread["sized"],
        }
    return out


def _measure_in_this_process(requests: int) -> dict[str, dict[str, float]]:
    # As THE gunicorn config does: prometheus_client in multiprocess mode on a memory filesystem, one BLAS thread;
    # the spent set in the multiprocess directory.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="receipts-multiproc-", dir=shm)
    os.environ.pop("FEEDBACK_STATE_DIR", None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    return measure(requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per case and variant in one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, metavar="SECONDS")
    args = parser.parse_args()
    guard = LoadGuard(settle_seconds=args.settle)
    rounds = []
    for round_ in range(args.rounds):
        with guard.round(f"round {round_ + 1}") as measured:
            rounds.append(_measure_in_this_process(args.requests))
        print(f"  round {round_ + 1}: {measured.describe()}", flush=True)
    print(f"receipts, in-process, {args.rounds} rounds x {args.requests} requests per case and variant (medians)")
    print(
        f"{'request':<16}{'thread CPU us':>15}{'without':>10}{'thread ratio':>14}{'process ratio':>15}"
        f"{'compute only':>14}"
    )
    for case in rounds[0]:
        real = statistics.median(r[case]["real_us"] for r in rounds)
        none = statistics.median(r[case]["none_us"] for r in rounds)
        thread = statistics.median(r[case]["thread_ratio"] for r in rounds)
        process = statistics.median(r[case]["process_ratio"] for r in rounds)
        compute = statistics.median(r[case]["compute_ratio"] for r in rounds)
        print(f"{case:<16}{real:>15.1f}{none:>10.1f}{thread:>14.3f}{process:>15.3f}{compute:>14.3f}")
    print(
        "without: an empty receipt issued and any taken, nothing recorded; ratios: with receipts / without.\n"
        "compute only: against a stand-in whose receipts are as long as real ones (the bytes carried and parsed\n"
        "cost the same in both): what issuing, checking and recording cost apart from the receipt's size."
    )
    print(f"machine during the rounds: {guard.summary()}")
    share = statistics.median(r["/predict 256"]["thread_ratio"] for r in rounds) - 1
    print(
        f"goal: receipts add <= {100 * GOAL_SHARE:.0f} % of /predict CPU at 256 rows: "
        f"{guard.verdict(share <= GOAL_SHARE)} ({100 * share:+.1f} %)"
    )


if __name__ == "__main__":
    main()
