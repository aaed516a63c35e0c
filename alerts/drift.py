"""Input drift: the Population Stability Index per feature over a short window gated on volume,
    PSI = sum over bins b of (a_b - e_b) * ln(a_b / e_b)
(a_b: share of the window's values of the feature in bin b; e_b: share of training rows in bin b, the bins
being training quantiles), and a direct test for a broken feature: nearly every value in one bin."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import KEEP, Alert, Concern, Record, sel
from app.metrics import MODEL_INPUT_FEATURE_BIN_TOTAL, MODEL_REFERENCE_FEATURE_BIN_RATIO
from app.train import DRIFT_FEATURES

W = t.DRIFT_WINDOW
BIN_RATE = f"namespace_job_feature_bin:model_input_feature_bin:rate{W}"
REFERENCE = "namespace_job_feature_bin:model_reference_feature_bin_ratio:max"
SHARE = f"namespace_job_feature_bin:model_input_feature_bin:ratio_rate{W}"
PSI = f"namespace_job_feature:model_input_psi:{W}"
VALUES = f"namespace_job_feature:model_input_feature_values:rate{W}"
FEATURE = f"{KEEP}, feature"
GATE = f"and on ({FEATURE})\n{VALUES} * {t.seconds(W)} >= {t.DRIFT_MIN_ROWS}"
BINS = sel(MODEL_INPUT_FEATURE_BIN_TOTAL)
BROKEN_RATE = f"sum by ({FEATURE}, bin) (rate({BINS}[{t.BROKEN_WINDOW}]))"
BROKEN_TOTAL = f"sum by ({FEATURE}) (rate({BINS}[{t.BROKEN_WINDOW}]))"


# Drift bins cost series on every pod, so a wide model has them on some features only (docs/scale.md).
UNWATCHED = f"""Only features with drift bins are watched: all of a model of up to {DRIFT_FEATURES} features, else
            the {DRIFT_FEATURES} it leans on most (the artefact's `drift_features`). A shift in any other feature
            raises no drift alert; it shows only through the answers (WineClassifierPredictionDrift,
            WineClassifierConfidenceLow, WineClassifierAccuracyLow): docs/runbooks.md."""


def _clamped(name: str) -> str:
    # ln(0) is -Inf and 0 * -Inf is NaN, which would poison the sum: an empty bin gets a large finite term.
    return f"clamp_min({name}, 1e-4)"


CONCERN = Concern(
    "drift",
    "input drift",
    (
        Record(BIN_RATE, f"sum by ({FEATURE}, bin) (rate({BINS}[{W}]))"),
        # Values of each feature per second: the denominator of the shares and the volume gate of the alerts.
        Record(VALUES, f"sum by ({FEATURE}) ({BIN_RATE})"),
        Record(REFERENCE, f"max by ({FEATURE}, bin) ({sel(MODEL_REFERENCE_FEATURE_BIN_RATIO)})"),
        # a_b. The `or` part gives every reference bin of a feature with traffic a share of 0, so an emptied bin
        # still adds its term instead of silently dropping out.
        Record(
            SHARE,
            f"(\n  {BIN_RATE}\n  / on ({FEATURE}) group_left ()\n  ({VALUES} > 0)\n)\nor\n"
            f"(\n  0 * {REFERENCE}\n  and on ({FEATURE})\n  ({VALUES} > 0)\n)",
        ),
        Record(
            PSI,
            f"sum by ({FEATURE}) (\n  (\n    {_clamped(SHARE)}\n    - {_clamped(REFERENCE)}\n  )\n"
            f"  * ln(\n    {_clamped(SHARE)}\n    / {_clamped(REFERENCE)}\n  )\n)",
        ),
        Alert(
            "WineClassifierInputFeatureBroken",
            (
                # The fullest bin's share: its values over all the feature's values.
                f"max by ({FEATURE}) (\n  {BROKEN_RATE}\n)\n/ on ({FEATURE})\n({BROKEN_TOTAL} > 0)"
                f"\n> {t.BROKEN_BIN_SHARE:g}\nand on ({FEATURE})\n"
                f"{BROKEN_TOTAL} * {t.seconds(t.BROKEN_WINDOW)} >= {t.BROKEN_MIN_ROWS}",
            ),
            "critical",
            "Input feature {{ $labels.feature }} of {{ $labels.namespace }}/{{ $labels.job }} looks broken: "
            "{{ $value | humanizePercentage }} of its values fall in one bin.",
            f"""{{{{ $value | humanizePercentage }}}} of the values of {{{{ $labels.feature }}}} over the last
            {t.human(t.BROKEN_WINDOW)} fell into a single bin of its training distribution (threshold
            {t.BROKEN_BIN_SHARE:.0%}; no training bin holds half): a constant, a default value or a unit error
            upstream. Every prediction on these rows is an extrapolation.""",
        ),
        Alert(
            "WineClassifierInputDriftHigh",
            (f"{PSI} > {t.PSI_MAJOR:g}\n{GATE}",),
            "critical",
            "Input feature {{ $labels.feature }} of {{ $labels.namespace }}/{{ $labels.job }} has drifted "
            '(PSI {{ $value | printf "%.2f" }}).',
            f"""The distribution of {{{{ $labels.feature }}}} over the last {t.human(W)} is far from the training data:
            PSI {{{{ $value | printf "%.3f" }}}} (above {t.PSI_MAJOR:g} is a major shift). Predictions on such
            inputs are extrapolations the model was never validated on. """
            + UNWATCHED,
            t.DRIFT_FOR,
        ),
        # The band below the major line, so that one feature raises one alert, not two.
        Alert(
            "WineClassifierInputDriftModerate",
            (f"({PSI} > {t.PSI_MODERATE:g}) <= {t.PSI_MAJOR:g}\n{GATE}",),
            "warning",
            "Input feature {{ $labels.feature }} of {{ $labels.namespace }}/{{ $labels.job }} is shifting "
            '(PSI {{ $value | printf "%.2f" }}).',
            f"""The distribution of {{{{ $labels.feature }}}} over the last {t.human(W)} has moved away from the
            training data: PSI {{{{ $value | printf "%.3f" }}}} ({t.PSI_MODERATE:g} to {t.PSI_MAJOR:g} is a moderate
            shift) for {t.human(t.DRIFT_MODERATE_FOR)}. Watch whether it grows. """
            + UNWATCHED,
            t.DRIFT_MODERATE_FOR,
        ),
    ),
)
