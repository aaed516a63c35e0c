"""`python -m dashboard [--check] [--output PATH]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboard.build import OUTPUT, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description="Generate the Grafana dashboard JSON.")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"file to write or check (default: {OUTPUT})")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file differs from what would be written"
    )
    args = parser.parse_args(argv)
    expected = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else None
        if current != expected:
            print(f"{args.output} is not what dashboard/ generates: run `python -m dashboard`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(expected)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
