"""`python -m alerts [--check]`: write (or check) manifests/prometheusrule-*.yaml and the runbooks' threshold table."""

from __future__ import annotations

import argparse
import sys

from alerts.build import outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alerts", description="Generate the alert and recording rules.")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file differs from what would be written"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"not what alerts/ generates (run `python -m alerts`): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
