"""The model service: a Flask app factory (``app.factory.create_app``) around a trained scikit-learn classifier.

Deliberately empty of imports: ``import app.train`` must not pull in prometheus_client before a gunicorn
config has set ``PROMETHEUS_MULTIPROC_DIR`` (docs/metrics.md).
"""
