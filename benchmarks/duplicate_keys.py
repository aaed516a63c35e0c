"""What refusing duplicate JSON keys costs per POST /predict, in-process, at 1 and 256 rows.

    python -m benchmarks.duplicate_keys [--requests 2000] [--rounds 3] [--settle 150]

Each request is a WSGI call into the Flask app (METRICS_ENABLED=0, so the share shown is of a smaller request
than the instrumented one: an upper bound), timed with `time.thread_time_ns`. Requests alternate one by one
between the service as it is and the same service with the duplicate check switched off, so both variants see
the same machine; figures are medians per variant and their difference. Bodies: rows as lists (the usual form:
one colon in the body, so the check is one byte count) and rows as objects keyed by feature name (13 keys a row:
the check re-serialises the decoded body and counts its colons). The check alone is timed too.

Every round records the load (harness/quiet.py); a round that starts above the limit is flagged busy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from app import validation
from app.factory import create_app
from app.train import train, write_artefact
from benchmarks.inprocess import _call
from harness.load import ROW
from harness.quiet import SETTLE_SECONDS, LoadGuard

SIZES = (1, 256)


def _bodies(features: list[str]) -> dict[str, bytes]:
    bodies = {}
    for size in SIZES:
        bodies[f"{size} rows as lists"] = json.dumps({"instances": [ROW] * size}).encode()
        bodies[f"{size} rows as objects"] = json.dumps(
            {"instances": [dict(zip(features, ROW, strict=True))] * size}
        ).encode()
    return bodies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant, body and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="seconds to wait for a quiet machine")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        write_artefact(*train(), Path(tmp))
        app = create_app(model_dir=Path(tmp), instrumented=False)
    features = app.extensions["model_state"].model.feature_names
    checked = validation._free_of_duplicates
    variants = {"checked": checked, "unchecked": lambda body, payload: True}
    guard = LoadGuard(settle_seconds=args.settle)

    print(f"{args.rounds} rounds x {args.requests} requests per variant and body, alternated request by request")
    for name, body in _bodies(features).items():
        times: dict[str, list[int]] = {v: [] for v in variants}
        for round_number in range(args.rounds):
            with guard.round(f"{name} #{round_number}") as current:
                for _ in range(args.requests):
                    for variant, check in variants.items():
                        validation._free_of_duplicates = check
                        times[variant].append(_call(app, body))
            validation._free_of_duplicates = checked
            print(f"  {name} round {round_number}: {current.describe()}")
        payload = json.loads(body)
        alone = []
        for _ in range(args.requests):
            started = time.thread_time_ns()
            checked(body, payload)
            alone.append(time.thread_time_ns() - started)
        on, off = statistics.median(times["checked"]), statistics.median(times["unchecked"])
        check = statistics.median(alone)
        print(
            f"{name}: request {on / 1000:.1f} us checked, {off / 1000:.1f} us unchecked: "
            f"{(on - off) / 1000:+.1f} us ({(on - off) / off:+.1%}); the check alone {check / 1000:.1f} us"
        )
    print(guard.summary())


if __name__ == "__main__":
    main()
