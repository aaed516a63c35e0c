"""The stack without a cluster: Prometheus and Alertmanager configured from the rendered manifests."""
