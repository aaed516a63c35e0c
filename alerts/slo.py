"""SLOs on /predict (availability: not 5xx; latency: answered within the threshold) and their multi-window,
multi-burn-rate alerts (Google SRE workbook, chapter 5)."""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

from alerts import thresholds as t
from alerts.rules import JOB, KEEP, Alert, Concern, Record, sel
from app.metrics import HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL, REQUEST_BUCKETS

PREDICT = "/predict"
# The `le` label exactly as prometheus_client writes the bucket (and Prometheus 3 normalises it).
LE = floatToGoString(t.LATENCY_THRESHOLD_SECONDS)
assert t.LATENCY_THRESHOLD_SECONDS in REQUEST_BUCKETS, "the latency SLO threshold must be a histogram bucket"

ALL = sel(HTTP_REQUESTS_TOTAL, route=PREDICT)
BAD = sel(HTTP_REQUESTS_TOTAL, route=PREDICT, status="~5..")
COUNT = sel(f"{HTTP_REQUEST_DURATION_SECONDS}_count", route=PREDICT)
FAST = sel(f"{HTTP_REQUEST_DURATION_SECONDS}_bucket", route=PREDICT, le=LE)


def _sum(expr: str, window: str) -> str:
    return f"sum by ({KEEP}) (rate({expr}[{window}]))"


def _availability_error(window: str) -> str:
    # A 5xx series only exists once one was answered: `or 0 * ...` turns "none yet" into 0.
    return f"(\n  {_sum(BAD, window)}\n  or\n  0 * {_sum(ALL, window)}\n)\n/\n{_sum(ALL, window)}"


def _latency_error(window: str) -> str:
    # Slow = all requests minus those in the threshold's bucket. The histogram has no status: a fast 500 is
    # good for this SLO and bad for the availability one.
    return f"1 - {_sum(FAST, window)} / {_sum(COUNT, window)}"


def _records() -> list[Record]:
    records = [
        Record("slo:objective:ratio", f"vector({t.AVAILABILITY_OBJECTIVE})", {"job": JOB, "slo": "availability"}),
        Record("slo:objective:ratio", f"vector({t.LATENCY_OBJECTIVE})", {"job": JOB, "slo": "latency"}),
        # 5m event rates: the long windows (3d, 30d) sum these instead of scanning days of raw samples.
        Record("slo:sli_events:rate5m", _sum(ALL, "5m"), {"slo": "availability"}),
        Record("slo:sli_bad_events:rate5m", f"{_sum(BAD, '5m')}\nor\n0 * {_sum(ALL, '5m')}", {"slo": "availability"}),
        Record("slo:sli_events:rate5m", _sum(COUNT, "5m"), {"slo": "latency"}),
        Record("slo:sli_bad_events:rate5m", f"{_sum(COUNT, '5m')}\n-\n{_sum(FAST, '5m')}", {"slo": "latency"}),
    ]
    # The paging windows straight from the counters: no lag from a recorded 5m rate being smoothed again.
    for window in t.RAW_WINDOWS:
        records.append(
            Record(f"slo:sli_error:ratio_rate{window}", _availability_error(window), {"slo": "availability"})
        )
        records.append(Record(f"slo:sli_error:ratio_rate{window}", _latency_error(window), {"slo": "latency"}))
    for window in t.RECORDED_WINDOWS:
        records.append(
            Record(
                f"slo:sli_error:ratio_rate{window}",
                f"sum_over_time(slo:sli_bad_events:rate5m[{window}]) / sum_over_time(slo:sli_events:rate5m[{window}])",
            )
        )
    # Burn rate = error ratio / error budget. 1 spends the budget in exactly the 30 days.
    burn_windows = sorted({w for b in t.PAGE_BURNS + t.TICKET_BURNS for w in (b.long, b.short)}, key=t.seconds)
    for window in burn_windows:
        records.append(
            Record(
                f"slo:burn_rate:ratio_rate{window}",
                f"slo:sli_error:ratio_rate{window} / on (job, slo) group_left () (1 - slo:objective:ratio)",
            )
        )
    records.append(
        Record(
            f"slo:error_budget_remaining:ratio_rate{t.BUDGET_WINDOW}",
            f"1 - slo:sli_error:ratio_rate{t.BUDGET_WINDOW} / on (job, slo) group_left () (1 - slo:objective:ratio)",
        )
    )
    return records


def _branch(burn: t.BurnWindow) -> str:
    return (
        f"slo:burn_rate:ratio_rate{burn.long} > {burn.factor:g}\n"
        f"and\nslo:burn_rate:ratio_rate{burn.short} > {burn.factor:g}"
    )


CONCERN = Concern(
    "slo",
    "SLOs and burn-rate alerts",
    (
        *_records(),
        Alert(
            "WineClassifierErrorBudgetBurnFast",
            tuple(_branch(b) for b in t.PAGE_BURNS),
            "critical",
            "The {{ $labels.slo }} SLO of {{ $labels.namespace }}/{{ $labels.job }} is burning its error budget fast.",
            f"""/predict is burning the 30-day {{{{ $labels.slo }}}} error budget {{{{ $value | printf "%.1f" }}}}
            times faster than sustainable (over {", or over ".join(b.long for b in t.PAGE_BURNS)}; the short window
            confirms it is still happening). A burn rate of {
                ", ".join(
                    f"{b.factor:g}"
                    + (" empties the budget in about " if i == 0 else " in ")
                    + f"{30 / b.factor:.0f} days"
                    for i, b in enumerate(t.PAGE_BURNS)
                )
            }.""",
        ),
        Alert(
            "WineClassifierErrorBudgetBurnSlow",
            tuple(_branch(b) for b in t.TICKET_BURNS),
            "warning",
            "The {{ $labels.slo }} SLO of {{ $labels.namespace }}/{{ $labels.job }} is burning its error budget.",
            f"""/predict has burnt the 30-day {{{{ $labels.slo }}}} error budget {{{{ $value | printf "%.1f" }}}}
            times faster than sustainable over the last {t.human(t.TICKET_BURNS[0].long)}, and still is over the
            last {t.human(t.TICKET_BURNS[0].short)}. Left alone, the budget runs out before the 30 days are over.""",
        ),
    ),
)
