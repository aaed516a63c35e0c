"""The discovery doctor: why a ServiceMonitor, PrometheusRule or dashboard is not picked up, answered hop by hop.

`cli` reads the input and prints, `walk` walks the hops in order, `discovery` holds the rule of each hop.
"""
