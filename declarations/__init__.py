"""What the project declares, read the way the cluster reads it: where its files are (`paths`), the local
default ports (`ports`), the kustomize manifests (`manifests`), label
selectors (`selectors`), the helmfile release and its values (`helm`), the kube-prometheus-stack render
(`chart`), Prometheus durations (`durations`), service discovery's targets (`targets`), the operator's
scrape jobs (`scrape`), the metric names a PromQL expression reads (`promql`) and KEDA's ScaledObject with the
HPA's arithmetic (`autoscaling`).

The ground floor: the rules, the dashboard, the doctor, the local stack, the benchmarks and the tests import it;
it imports none of them.
"""
