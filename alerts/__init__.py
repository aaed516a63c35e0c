"""The wine classifier's alert and recording rules, generated: `python -m alerts` writes one PrometheusRule per
concern into manifests/ (`--check` fails when a committed file differs), `python -m detection.simulate` measures how
fast they fire on traffic sampled from the real app.

Every number an alert compares against lives in `alerts.thresholds`; metric names come from `app.metrics`.
"""
