"""The stack without a cluster: the local pods (gunicorn), Prometheus, Alertmanager, Grafana and a webhook sink,
configured from the rendered manifests and the chart (`declarations`), started and stopped by `python -m offcluster`."""
