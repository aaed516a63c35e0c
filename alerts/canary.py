"""A canary against stable, on live traffic. The canary overlay (canary/) runs pods labelled `track: canary`
next to the stable ones behind the same Service; the ServiceMonitor copies `track` onto every series, so each
recording here keeps it, and the alert compares the canary's value with stable's (`ignoring (track)`, which
drops `track` from the result): errors, p95 latency, mean confidence, class shares, live accuracy from
feedback. Without a canary nothing has `track="canary"` and nothing fires. Each branch of the alert names what
is worse in its `signal` label.

Feedback is the exception to "by the pod's track": any pod counts an item under the model version that made
the prediction (app/receipts.py), so the pod that counted it says nothing about the track. Feedback is summed
by version and given the track whose pods serve that version (from `model_info`); a version served by both
tracks (the canary promoted, not yet deleted) counts as stable.
"""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import KEEP, Alert, Concern, Record, sel
from app.metrics import (
    HTTP_REQUEST_DURATION_SECONDS,
    HTTP_REQUESTS_TOTAL,
    MODEL_FEEDBACK_TOTAL,
    MODEL_INFO,
    MODEL_PREDICTION_CONFIDENCE,
    MODEL_PREDICTIONS_TOTAL,
)

W = t.CANARY_WINDOW
BY = f"{KEEP}, track"
REQUESTS = f"namespace_job_track:http_requests:rate{W}"
ERRORS = f"namespace_job_track:http_requests_5xx:ratio_rate{W}"
P95 = f"namespace_job_track:http_request_duration_seconds:p95_rate{W}"
ROWS = f"namespace_job_track:model_predictions:rate{W}"
CLASS_SHARE = f"namespace_job_track_class:model_predictions:ratio_rate{W}"
CONFIDENCE = f"namespace_job_track:model_prediction_confidence:mean{W}"
VERSION_TRACK = "namespace_job_version:model_info_track:max"
MATRIX = f"namespace_job_track_predicted_actual:model_feedback:rate{W}"
FEEDBACK = f"namespace_job_track:model_feedback:rate{W}"
ACCURACY = f"namespace_job_track:model_accuracy:ratio_rate{W}"
VERSION = "namespace_job_track_version:model_info:max"
CANARY, STABLE = '{track="canary"}', '{track="stable"}'
PREDICT = {"route": "/predict"}
BUCKETS = sel(HTTP_REQUEST_DURATION_SECONDS + "_bucket", **PREDICT)


def _gate(record: str, minimum: int, track: str = CANARY) -> str:
    """Enough volume on one track: rate x window = events in the window."""
    return f"and on ({KEEP})\n{record}{track} * {t.seconds(W)} >= {minimum}"


def _signal(name: str, expr: str) -> str:
    # An empty source matches the empty string: the label is set on every series of the branch.
    return f'label_replace(\n{_indent(expr)},\n  "signal", "{name}", "", ""\n)'


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines())


def _as_class(label: str) -> str:
    return f'label_replace({MATRIX}, "class", "$1", "{label}", "(.*)")'


CONCERN = Concern(
    "canary",
    "canary against stable, by pod track",
    (
        Record(REQUESTS, f"sum by ({BY}) (rate({sel(HTTP_REQUESTS_TOTAL, **PREDICT)}[{W}]))"),
        Record(
            ERRORS,
            f"(\n  sum by ({BY}) (rate({sel(HTTP_REQUESTS_TOTAL, **PREDICT, status='~5..')}[{W}]))\n  or\n"
            f"  0 * {REQUESTS}\n)\n/ ({REQUESTS} > 0)",
        ),
        Record(
            P95,
            f"histogram_quantile(\n  0.95,\n  sum by ({BY}, le) (\n    rate({BUCKETS}[{W}])\n  )\n)",
        ),
        Record(ROWS, f"sum by ({BY}) (rate({sel(MODEL_PREDICTIONS_TOTAL)}[{W}]))"),
        Record(
            CLASS_SHARE,
            f"sum by ({BY}, predicted_class) (rate({sel(MODEL_PREDICTIONS_TOTAL)}[{W}]))\n"
            f"/ on ({BY}) group_left ()\n({ROWS} > 0)",
        ),
        Record(
            CONFIDENCE,
            f"sum by ({BY}) (rate({sel(MODEL_PREDICTION_CONFIDENCE + '_sum')}[{W}]))\n"
            f"/ (sum by ({BY}) (rate({sel(MODEL_PREDICTION_CONFIDENCE + '_count')}[{W}])) > 0)",
        ),
        # The track of each served version, one per version (`or on` keeps stable's where both serve it).
        Record(
            VERSION_TRACK,
            "\nor on (namespace, job, model_version)\n".join(
                f"label_replace(\n  max by ({KEEP}, model_version) ({sel(MODEL_INFO, track=track)}),\n"
                f'  "track", "{track}", "", ""\n)'
                for track in ("stable", "canary")
            ),
        ),
        Record(
            MATRIX,
            f"sum by ({BY}, predicted_class, actual_class) (\n"
            f"  sum by ({KEEP}, model_version, predicted_class, actual_class) (\n"
            f"    rate({sel(MODEL_FEEDBACK_TOTAL)}[{W}])\n  )\n"
            f"  * on ({KEEP}, model_version) group_left (track)\n  {VERSION_TRACK}\n)",
        ),
        Record(FEEDBACK, f"sum by ({BY}) ({MATRIX})"),
        # The diagonal of each track's confusion matrix (see the quality rules) over all its items.
        Record(
            ACCURACY,
            f"(\n  sum by ({BY}) (\n    {_as_class('predicted_class')}\n    and\n    {_as_class('actual_class')}\n  )\n"
            f"  or\n  0 * {FEEDBACK}\n)\n/ ({FEEDBACK} > 0)",
        ),
        # Which model version each track serves: the dashboard's and the runbook's first question.
        Record(VERSION, f"max by ({BY}, model_version) ({sel(MODEL_INFO)})"),
        Alert(
            "WineClassifierCanaryWorse",
            (
                _signal(
                    "errors",
                    f"{ERRORS}{CANARY}\n> ignoring (track)\n({ERRORS}{STABLE} + {t.CANARY_ERROR_MARGIN:g})\n"
                    + _gate(REQUESTS, t.CANARY_MIN_REQUESTS),
                ),
                _signal(
                    "latency",
                    f"{P95}{CANARY}\n> ignoring (track)\n({P95}{STABLE} * {t.CANARY_P95_FACTOR:g})\n"
                    f"and on ({KEEP})\n{P95}{CANARY} > {t.CANARY_P95_FLOOR_SECONDS:g}\n"
                    + _gate(REQUESTS, t.CANARY_MIN_REQUESTS),
                ),
                _signal(
                    "confidence",
                    f"{CONFIDENCE}{CANARY}\n< ignoring (track)\n({CONFIDENCE}{STABLE} - {t.CANARY_CONFIDENCE_DROP:g})\n"
                    + _gate(ROWS, t.CANARY_MIN_ROWS),
                ),
                _signal(
                    "class_shares",
                    f"max by ({BY}) (\n  abs({CLASS_SHARE}{CANARY} - ignoring (track) {CLASS_SHARE}{STABLE})\n)\n"
                    f"> {t.CANARY_CLASS_SHARE_DIFF:g}\n" + _gate(ROWS, t.CANARY_MIN_ROWS),
                ),
                _signal(
                    "accuracy",
                    f"{ACCURACY}{CANARY}\n< ignoring (track)\n({ACCURACY}{STABLE} - {t.CANARY_ACCURACY_DROP:g})\n"
                    + _gate(FEEDBACK, t.CANARY_MIN_FEEDBACK)
                    + "\n"
                    + _gate(FEEDBACK, t.CANARY_MIN_FEEDBACK, STABLE),
                ),
            ),
            # A third of the traffic gets the worse model until someone rolls back, and rolling back is one
            # command: worth a page.
            "critical",
            "The canary of {{ $labels.namespace }}/{{ $labels.job }} is worse than stable on {{ $labels.signal }}.",
            f"""Over the last {t.human(W)} the canary pods (track canary) have been worse than the stable ones on
            {{{{ $labels.signal }}}} (canary value {{{{ $value | printf "%.3g" }}}}), with enough traffic to judge,
            for {t.human(t.CANARY_FOR)}. The dashboard's Canary row puts both tracks side by side. Roll the
            canary back unless the difference is understood.""",
            t.CANARY_FOR,
        ),
    ),
)
