"""The load test: locustfile.py and locust.conf (what locust runs), the master's Prometheus exporter and its
metric names, and the kustomization that runs it all in the cluster (`kubectl apply -k loadtest`)."""
