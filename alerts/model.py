"""Model outputs: prediction volume, class shares against the training priors, confidence, version skew."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import KEEP, Alert, Concern, Record, sel
from app.metrics import MODEL_INFO, MODEL_PREDICTION_CONFIDENCE, MODEL_PREDICTIONS_TOTAL, MODEL_REFERENCE_CLASS_RATIO

W = t.MODEL_WINDOW
ROWS = f"namespace_job:model_predictions:rate{W}"
CLASS_SHARE = f"namespace_job_class:model_predictions:ratio_rate{W}"
PRIOR = "namespace_job_class:model_reference_class_ratio:max"
CONFIDENCE = f"namespace_job:model_prediction_confidence:mean{W}"
GATE = f"and on ({KEEP})\n{ROWS} * {t.seconds(W)} >= {t.MODEL_MIN_ROWS}"

CONCERN = Concern(
    "model",
    "model outputs",
    (
        # Rows predicted per second over the window: the volume gate of these alerts.
        Record(ROWS, f"sum by ({KEEP}) (rate({sel(MODEL_PREDICTIONS_TOTAL)}[{W}]))"),
        Record(
            CLASS_SHARE,
            f"sum by ({KEEP}, predicted_class) (rate({sel(MODEL_PREDICTIONS_TOTAL)}[{W}]))\n"
            f"/ on ({KEEP}) group_left ()\n({ROWS} > 0)",
        ),
        # Every pod exports the same training priors; max() folds the replicas into one series.
        Record(PRIOR, f"max by ({KEEP}, predicted_class) ({sel(MODEL_REFERENCE_CLASS_RATIO)})"),
        Record(
            CONFIDENCE,
            f"sum by ({KEEP}) (rate({sel(MODEL_PREDICTION_CONFIDENCE + '_sum')}[{W}]))\n"
            f"/ (sum by ({KEEP}) (rate({sel(MODEL_PREDICTION_CONFIDENCE + '_count')}[{W}])) > 0)",
        ),
        Alert(
            "WineClassifierPredictionDrift",
            (f"abs(\n  {CLASS_SHARE}\n  - {PRIOR}\n) > {t.PREDICTION_SHARE_DRIFT:g}\n{GATE}",),
            "warning",
            "Class {{ $labels.predicted_class }} is predicted unusually often or rarely by "
            "{{ $labels.namespace }}/{{ $labels.job }}.",
            f"""Over the last {t.human(W)} the share of rows predicted as {{{{ $labels.predicted_class }}}} differs from
            its share in the training labels by {{{{ $value | humanizePercentage }}}} of all rows (threshold
            {t.PREDICTION_SHARE_DRIFT:.0%}). Either the inputs changed (check the drift row) or the model
            misbehaves.""",
            t.MODEL_FOR,
        ),
        Alert(
            "WineClassifierConfidenceLow",
            (f"{CONFIDENCE} < {t.CONFIDENCE_MIN:g}\n{GATE}",),
            "warning",
            "Mean prediction confidence of {{ $labels.namespace }}/{{ $labels.job }} is "
            "{{ $value | humanizePercentage }}.",
            f"""The probability of the predicted class averaged {{{{ $value | humanizePercentage }}}} over the
            last {t.human(W)} (threshold {t.CONFIDENCE_MIN:.0%}): the model is unsure about much of what it sees,
            typically because the inputs left the region it was trained on.""",
            t.MODEL_FOR,
        ),
        # Normal for the minutes of a rolling update, hence the hold. Per track: a canary (track canary, see
        # the canary rules) serves another version on purpose.
        Alert(
            "WineClassifierModelVersionMismatch",
            (f"count by ({KEEP}, track) (\n  count by ({KEEP}, track, model_version) ({sel(MODEL_INFO)})\n) > 1",),
            "warning",
            "{{ $labels.namespace }}/{{ $labels.job }} serves {{ $value }} model versions at once.",
            f"""The pods of {{{{ $labels.job }}}} have reported {{{{ $value }}}} different model versions for
            {t.human(t.VERSION_MISMATCH_FOR)}: the same input can get different answers depending on the pod. A rollout
            is stuck or an image tag points at different artefacts.""",
            t.VERSION_MISMATCH_FOR,
        ),
    ),
)
