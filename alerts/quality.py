"""Model quality from ground truth. POST /feedback counts (predicted, actual) pairs in a confusion matrix whose
cells are all exported from the start (at 0):
    accuracy          = diagonal cells / all cells
    recall of class c = diagonal cell of c / all cells whose actual_class is c
PromQL cannot compare two labels of one series, so the diagonal is a set join: copy predicted_class into a
new label `class` on one side, actual_class on the other, and `and` them (a cell survives only where the two
agree). No class name is written anywhere. Model versions are summed (a rollout mixes them for minutes)."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import KEEP, Alert, Concern, Record, sel
from app.metrics import MODEL_FEEDBACK_TOTAL, MODEL_TRAINING_ACCURACY

W = t.ACCURACY_WINDOW
MATRIX = f"namespace_job_predicted_actual:model_feedback:rate{W}"
VOLUME = f"namespace_job:model_feedback:rate{W}"
CORRECT = f"namespace_job_actual:model_feedback_correct:rate{W}"
ACCURACY = f"namespace_job:model_accuracy:ratio_rate{W}"
RECALL = f"namespace_job_actual:model_recall:ratio_rate{W}"
TRAINED = "namespace_job:model_training_accuracy:max"


def _as_class(label: str) -> str:
    return f'label_replace({MATRIX}, "class", "$1", "{label}", "(.*)")'


CONCERN = Concern(
    "quality",
    "model quality from feedback",
    (
        Record(
            MATRIX,
            f"sum by ({KEEP}, predicted_class, actual_class) (\n  rate({sel(MODEL_FEEDBACK_TOTAL)}[{W}])\n)",
        ),
        # x seconds in the window = items in it: the volume gate of the accuracy alert.
        Record(VOLUME, f"sum by ({KEEP}) ({MATRIX})"),
        Record(
            "namespace_job:model_feedback:rate5m",
            f"sum by ({KEEP}) (rate({sel(MODEL_FEEDBACK_TOTAL)}[5m]))",
        ),
        # The diagonal per actual class; a class whose row has items but no correct one gets a real 0.
        Record(
            CORRECT,
            f"sum by ({KEEP}, actual_class) (\n  {_as_class('predicted_class')}\n  and\n"
            f"  {_as_class('actual_class')}\n)\nor\n0 * sum by ({KEEP}, actual_class) ({MATRIX})",
        ),
        Record(ACCURACY, f"sum by ({KEEP}) ({CORRECT})\n/ on ({KEEP})\n({VOLUME} > 0)"),
        Record(
            RECALL,
            f"{CORRECT}\n/ on ({KEEP}, actual_class)\n(sum by ({KEEP}, actual_class) ({MATRIX}) > 0)",
        ),
        # Every pod of a version exports the same value; during a rollout max() keeps the better model's bar.
        Record(TRAINED, f"max by ({KEEP}) ({sel(MODEL_TRAINING_ACCURACY)})"),
        # Warning, not critical: nothing on call can do in minutes fixes it (retraining, or finding out that
        # the labels themselves are wrong, is working-hours work).
        Alert(
            "WineClassifierAccuracyLow",
            (
                f"(\n  {ACCURACY}\n  < on ({KEEP})\n  ({TRAINED} - {t.ACCURACY_DROP:g})\n)\n"
                f"and on ({KEEP})\n{VOLUME} * {t.seconds(W)} >= {t.ACCURACY_MIN_FEEDBACK}",
            ),
            "warning",
            "Live accuracy of {{ $labels.namespace }}/{{ $labels.job }} is {{ $value | humanizePercentage }}, "
            "far below its training accuracy.",
            f"""Over the last {t.human(W)} {{{{ $value | humanizePercentage }}}} of the predictions that got
            feedback were right{{{{ with printf "{VOLUME}{{namespace=%q, job=%q}} * {t.seconds(W)}"
            $labels.namespace $labels.job | query }}}} ({{{{ . | first | value | printf "%.0f" }}}} feedback
            items){{{{ end }}}}, against {{{{ with printf "{TRAINED}{{namespace=%q, job=%q}}" $labels.namespace
            $labels.job | query }}}}{{{{ . | first | value | humanizePercentage }}}}{{{{ end }}}} on the held-out test
            split at training time (threshold: {t.ACCURACY_DROP * 100:g} points below), for
            {t.human(t.ACCURACY_FOR)} now. The per-class recall says which class the model gets wrong.""",
            t.ACCURACY_FOR,
        ),
    ),
)
