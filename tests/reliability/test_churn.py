"""Worker churn: workers recycled by `max_requests` about a hundred times under load, scraped every 100 ms.
The multiprocess directory stays bounded (dead workers' files folded into archives), every counter is exact
and none ever goes down. `python -m benchmarks.churn` measures the same at 0, 100 and 1000 recycles."""

from __future__ import annotations

import re
import time

from harness.exposition import Scraper, monotonicity_violations, predict_200s, samples, typed_samples
from harness.load import Load
from harness.processes import booted_workers, live_workers, report, scrape_failures, wait_until

WORKERS = 2
RECYCLES = 100
# Enough recycles to tell "bounded" from "one more file per dead worker" even if the deadline cuts the run short.
MIN_RECYCLES = 50
DEADLINE_SECONDS = 40
# Each worker exits after this many requests: small, so that recycles, not requests, dominate the run.
MAX_REQUESTS = 5
FILE = re.compile(r"^(?P<kind>[a-z_]+?)_(?P<owner>\d+|archive)\.db$")


def test_a_hundred_recycles_keep_the_directory_bounded_and_the_counts_exact(server_factory):
    server = server_factory(workers=WORKERS, MAX_REQUESTS=str(MAX_REQUESTS), MAX_REQUESTS_JITTER="0")
    master = server.process.pid
    baseline = server.scrape()
    booted_before = booted_workers(server.log)
    scraper = Scraper(server.metrics, interval=0.1).start()
    load = Load(server.app, threads=4).start()
    try:
        # 100 recycles take ≈ 25 s here (each costs a worker ≈ 0.25 s); allow for a busy machine.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while booted_workers(server.log) - booted_before < RECYCLES and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        load.stop()
        scraper.stop()
    recycles = booted_workers(server.log) - booted_before
    # Quiescent: the last recycled worker reaped and folded, its replacement up.
    wait_until(lambda: len(live_workers(master)) == WORKERS, 10, what="a full set of workers")
    time.sleep(0.5)
    final = server.scrape()
    owners = {master, *live_workers(master)}
    files = sorted(p.name for p in server.multiproc.glob("*.db"))
    parsed = [FILE.match(name) for name in files]
    kinds = {m["kind"] for m in parsed if m}
    served = predict_200s(final) - predict_200s(baseline)
    report(
        "churn",
        recycles=recycles,
        requests=load.ok,
        server_200=served,
        files=len(files),
        scrapes=len(scraper.scrapes),
        failed_scrapes=sum(scraper.errors.values()),
    )

    assert recycles >= MIN_RECYCLES, f"only {recycles} recycles in {DEADLINE_SECONDS}s"
    # Recycling is graceful: the worker finishes its request, the listener never closes.
    assert set(load.statuses) == {200} and not load.failures, (load.statuses, load.failures)
    assert served == load.ok, "every request counted exactly once across a hundred dead workers"
    assert scrape_failures(scraper, server.log) == []
    assert len(scraper.scrapes) >= 50
    assert monotonicity_violations([*scraper.scrapes, typed_samples(final)]) == []
    assert set(samples(baseline)) <= set(samples(final))
    # Bounded: every file belongs to a live process or is an archive, whatever the number of recycles.
    assert all(parsed), files
    stray = [m.string for m in parsed if m["owner"] != "archive" and int(m["owner"]) not in owners]
    assert stray == [], f"files of dead workers left behind: {stray}"
    assert len(files) <= len(kinds) * (len(owners) + 1)
