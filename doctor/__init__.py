"""The discovery doctor: why a ServiceMonitor, PrometheusRule or dashboard is not picked up, answered hop by hop.

`cli` reads the input and prints; `walk` walks each object's chain of hops in order, `reachability` the last
hops of an endpoint (readiness, EndpointSlices, NetworkPolicies); `report` holds what a walk produces;
`discovery` holds the rule of each hop.
"""
