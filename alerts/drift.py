"""Input drift: the Population Stability Index per feature over a short window gated on volume,
    PSI = sum over bins b of (a_b - e_b) * ln(a_b / e_b)
(a_b: share of the window's values of the feature in bin b; e_b: share of training rows in bin b, the bins
being training quantiles), and a direct test for a broken feature: nearly every value in one bin. Both are
judged over a short window where it holds enough values, else over a longer one (a quiet service), with the
same volume gate: the same statistic at the same noise, over the time the traffic takes to supply it. The
moderate-drift warning keeps to the short window (alerts/thresholds.py says why)."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.rules import KEEP, Alert, Concern, Record, sel
from app.metrics import MODEL_INPUT_FEATURE_BIN_TOTAL, MODEL_REFERENCE_FEATURE_BIN_RATIO
from app.train import DRIFT_FEATURES

W, QUIET = t.DRIFT_WINDOW, t.DRIFT_QUIET_WINDOW
REFERENCE = "namespace_job_feature_bin:model_reference_feature_bin_ratio:max"
FEATURE = f"{KEEP}, feature"
BINS = sel(MODEL_INPUT_FEATURE_BIN_TOTAL)


def bin_rate(window: str) -> str:
    return f"namespace_job_feature_bin:model_input_feature_bin:rate{window}"


def share(window: str) -> str:
    return f"namespace_job_feature_bin:model_input_feature_bin:ratio_rate{window}"


def psi(window: str) -> str:
    return f"namespace_job_feature:model_input_psi:{window}"


def values(window: str) -> str:
    return f"namespace_job_feature:model_input_feature_values:rate{window}"


def gate(window: str) -> str:
    return f"{values(window)} * {t.seconds(window)} >= {t.DRIFT_MIN_ROWS}"


PSI = psi(W)  # the dashboard's
VALUES = values(W)
# The PSI the alerts judge: the short window's where it has DRIFT_MIN_ROWS values, else the quiet window's
# where that one has them, else none (too few values to tell drift from noise).
JUDGED_PSI = "namespace_job_feature:model_input_psi:gated"


# Drift bins cost series on every pod, so a wide model has them on some features only (docs/scale.md).
UNWATCHED = f"""Only features with drift bins are watched: all of a model of up to {DRIFT_FEATURES} features, else
            the {DRIFT_FEATURES} it leans on most (the artefact's `drift_features`). A shift in any other feature
            raises no drift alert; it shows only through the answers (WineClassifierPredictionDrift,
            WineClassifierConfidenceLow, WineClassifierAccuracyLow): docs/runbooks.md."""


def _clamped(name: str) -> str:
    # ln(0) is -Inf and 0 * -Inf is NaN, which would poison the sum: an empty bin gets a large finite term.
    return f"clamp_min({name}, 1e-4)"


# The quiet window's bin rates come from the short window's, recorded every evaluation: their sum over the quiet
# window at this step, times the step, is the window's count (a step missing because the feature had no
# values counts 0). A rate() over the raw counters would read 480 samples per series at every evaluation.
QUIET_STEP = "5m"


def _quiet_bin_rate() -> str:
    return f"sum_over_time({bin_rate(W)}[{QUIET}:{QUIET_STEP}])\n* {t.seconds(QUIET_STEP)} / {t.seconds(QUIET)}"


def _psi_records(window: str) -> tuple[Record, ...]:
    rate, count, fraction = bin_rate(window), values(window), share(window)
    raw = f"sum by ({FEATURE}, bin) (rate({BINS}[{window}]))"
    return (
        Record(rate, raw if window == W else _quiet_bin_rate()),
        # Values of each feature per second: the denominator of the shares and the volume gate of the alerts.
        Record(count, f"sum by ({FEATURE}) ({rate})"),
        # a_b. The `or` part gives every reference bin of a feature with traffic a share of 0, so an emptied bin
        # still adds its term instead of silently dropping out.
        Record(
            fraction,
            f"(\n  {rate}\n  / on ({FEATURE}) group_left ()\n  ({count} > 0)\n)\nor\n"
            f"(\n  0 * {REFERENCE}\n  and on ({FEATURE})\n  ({count} > 0)\n)",
        ),
        Record(
            psi(window),
            f"sum by ({FEATURE}) (\n  (\n    {_clamped(fraction)}\n    - {_clamped(REFERENCE)}\n  )\n"
            f"  * ln(\n    {_clamped(fraction)}\n    / {_clamped(REFERENCE)}\n  )\n)",
        ),
    )


def _broken_total(window: str) -> str:
    return f"sum by ({FEATURE}) (rate({BINS}[{window}]))"


def _broken_enough(window: str) -> str:
    return f"{_broken_total(window)} * {t.seconds(window)} >= {t.BROKEN_MIN_ROWS}"


def _broken(window: str) -> str:
    """The fullest bin's share of a feature's values over `window`, where the window holds enough of them."""
    return (
        f"max by ({FEATURE}) (\n  sum by ({FEATURE}, bin) (rate({BINS}[{window}]))\n)\n/ on ({FEATURE})\n"
        f"({_broken_total(window)} > 0)\n> {t.BROKEN_BIN_SHARE:g}\nand on ({FEATURE})\n{_broken_enough(window)}"
    )


CONCERN = Concern(
    "drift",
    "input drift",
    (
        Record(REFERENCE, f"max by ({FEATURE}, bin) ({sel(MODEL_REFERENCE_FEATURE_BIN_RATIO)})"),
        *_psi_records(W),
        *_psi_records(QUIET),
        Record(
            JUDGED_PSI,
            f"(\n  {PSI}\n  and on ({FEATURE})\n  {gate(W)}\n)\nor\n"
            f"(\n  {psi(QUIET)}\n  and on ({FEATURE})\n  {gate(QUIET)}\n)",
        ),
        Alert(
            "WineClassifierInputFeatureBroken",
            (
                _broken(t.BROKEN_WINDOW),
                # A quiet service: the longer window, only where the short one lacks the values to decide.
                f"{_broken(t.BROKEN_QUIET_WINDOW)}\nunless on ({FEATURE})\n{_broken_enough(t.BROKEN_WINDOW)}",
            ),
            "critical",
            "Input feature {{ $labels.feature }} of {{ $labels.namespace }}/{{ $labels.job }} looks broken: "
            "{{ $value | humanizePercentage }} of its values fall in one bin.",
            f"""{{{{ $value | humanizePercentage }}}} of the values of {{{{ $labels.feature }}}} over the last
            {t.human(t.BROKEN_WINDOW)} (on a quiet service, {t.human(t.BROKEN_QUIET_WINDOW)}) fell into a single
            bin of its training distribution (threshold {t.BROKEN_BIN_SHARE:.0%}; no training bin holds half): a
            constant, a default value or a unit error upstream. Every prediction on these rows is an
            extrapolation.""",
        ),
        Alert(
            "WineClassifierInputDriftHigh",
            (f"{JUDGED_PSI} > {t.PSI_MAJOR:g}",),
            "critical",
            "Input feature {{ $labels.feature }} of {{ $labels.namespace }}/{{ $labels.job }} has drifted "
            '(PSI {{ $value | printf "%.2f" }}).',
            f"""The distribution of {{{{ $labels.feature }}}} over the last {t.human(W)} (on a quiet service,
            {t.human(QUIET)}) is far from the training data:
            PSI {{{{ $value | printf "%.3f" }}}} (above {t.PSI_MAJOR:g} is a major shift). Predictions on such
            inputs are extrapolations the model was never validated on. """
            + UNWATCHED,
            t.DRIFT_FOR,
        ),
        # The band below the major line, so that one feature raises one alert, not two.
        Alert(
            "WineClassifierInputDriftModerate",
            # The short window only: over 2 hours of a quiet service's ~720 values, a PSI just above the
            # moderate line lasts long enough to pass the `for:` by chance (measured: once in 3 quiet days).
            (f"({PSI} > {t.PSI_MODERATE:g}) <= {t.PSI_MAJOR:g}\nand on ({FEATURE})\n{gate(W)}",),
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
