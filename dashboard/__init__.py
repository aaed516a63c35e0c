"""The wine classifier's Grafana dashboard, built with grafana-foundation-sdk.

    python -m dashboard           # write manifests/dashboards/wine-classifier.json
    python -m dashboard --check   # exit 1 if the committed file is not what the code produces

kustomize's configMapGenerator turns the JSON into a ConfigMap labelled for the Grafana sidecar.
"""

import warnings

with warnings.catch_warnings():
    # The SDK warns, when its modules are imported, that the v1 dashboard schema is deprecated in favour of
    # v2. The Grafana sidecar provisions v1 JSON files, so v1 it is.
    warnings.simplefilter("ignore", DeprecationWarning)
    from dashboard.build import OUTPUT, UID, build_dashboard, panels, queries, render, to_dict
    from declarations.promql import metric_names

__all__ = ["OUTPUT", "UID", "build_dashboard", "metric_names", "panels", "queries", "render", "to_dict"]
