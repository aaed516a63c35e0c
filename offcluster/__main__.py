"""The local stack's command line (the Makefile's targets call it).

    python -m offcluster up       # start detached: the pods (gunicorn), Prometheus, Alertmanager, webhook sink
    python -m offcluster down     # stop everything it started
    python -m offcluster status     # which processes run; with Prometheus up, the pods the ScaledObject asks for
    python -m offcluster demo     # up, drive locust traffic, print URLs and a summary, Ctrl-C stops all
    python -m offcluster config   # only write the generated config files
    python -m offcluster doctor [DIR] [--live] [--from-json FILE]   # why a ServiceMonitor finds no target

Ports come from APP_PORT, METRICS_PORT, PROMETHEUS_PORT, ALERTMANAGER_PORT, WEBHOOK_PORT, GRAFANA_PORT;
state (configs, data, logs, pids, model) lives under STATE_DIR (default .state/). CANARY=1 runs what
`kubectl apply -k canary` declares (the stable pods plus a canary pod of another model version) instead of
`manifests/`. Grafana runs when it is
installed (`grafana` / `grafana-server` on PATH, or GRAFANA_HOME).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from declarations import ports
from declarations.manifests import RenderError, render
from declarations.paths import CANARY, MANIFESTS, ROOT
from offcluster.autoscaling import status_lines
from offcluster.config import Ports
from offcluster.demo import run_demo
from offcluster.stack import Stack, StackError


def _port(name: str) -> int | None:
    """APP_PORT and METRICS_PORT: unset, what the Deployment declares."""
    value = os.environ.get(name)
    return int(value) if value else None


def stack_from_env() -> Stack:
    local = Ports(
        app=_port("APP_PORT"),
        metrics=_port("METRICS_PORT"),
        prometheus=ports.from_env("PROMETHEUS_PORT"),
        alertmanager=ports.from_env("ALERTMANAGER_PORT"),
        webhook=ports.from_env("WEBHOOK_PORT"),
        grafana=ports.from_env("GRAFANA_PORT"),
        locust=ports.from_env("LOCUST_PORT"),
    )
    return Stack(
        Path(os.environ.get("STATE_DIR", ROOT / ".state")),
        local,
        scrape_interval=os.environ.get("SCRAPE_INTERVAL") or None,
        evaluation_interval=os.environ.get("EVALUATION_INTERVAL") or None,
        workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
        manifests=CANARY if os.environ.get("CANARY") else MANIFESTS,
    )


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:
        # Its own arguments (DIR, --live...) and exit codes (2: bad input); it starts nothing.
        from doctor import cli as doctor

        return doctor.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m offcluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=["up", "down", "status", "demo", "config", "doctor"])
    parser.add_argument("--duration", default=os.environ.get("DEMO_DURATION", "3m"), help="demo: locust run time")
    parser.add_argument("--drift", action="store_true", help="demo: send drifted traffic too")
    args = parser.parse_args(argv)
    # Ctrl-C and `kill` both end in `down` for the demo; for `up` the processes are meant to outlive us.
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell that starts us in the background leaves SIGINT ignored; Ctrl-C must still stop the demo.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stack = None
    try:
        stack = stack_from_env()
        if args.command == "config":
            stack.state.mkdir(parents=True, exist_ok=True)
            stack.write_config()
            print(f"wrote {stack.prometheus_file}, {stack.rules_file}, {stack.alertmanager_file}, {stack.grafana_dir}/")
        elif args.command == "up":
            for name, url in stack.up().items():
                print(f"{name:>16}: {url}")
            for note in stack.notes:
                print(note)
        elif args.command == "down":
            stopped = stack.down()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.command == "status":
            running = stack.running()
            names = ("webhook", "alertmanager", *(pod.name for pod in stack.pods), "prometheus", "grafana")
            width = max(map(len, names))
            for name in names:
                state = f"running (pid {running[name]})" if name in running else "stopped"
                if name == "grafana" and stack.grafana is None:
                    state = "not installed"
                print(f"{name:>{width}}: {state}")
            pods = {pod.name: running[pod.name] for pod in stack.pods if pod.name in running}
            if "prometheus" in running and pods:
                for line in status_lines(stack.urls["prometheus"], render(stack.manifests), pods):
                    print(line)
        elif args.command == "demo":
            return run_demo(stack, args.duration, args.drift)
    except (StackError, RenderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "demo" and stack is not None:
            # A second Ctrl-C, or the kill a supervisor sends after the first signal, must not cut the stopping
            # short and leave part of the stack running (SIGKILL still can).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("\nstopping everything (further Ctrl-C ignored until done) ...", flush=True)
            print("stopped:", ", ".join(stack.down()) or "nothing was running")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
