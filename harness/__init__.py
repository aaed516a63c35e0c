"""Support code that tests and benchmarks share: THE gunicorn command on free ports (`server`), load on
/predict (`load`), reading an exposition (`exposition`), process inspection (`processes`), and the image built
by podman and run as the Deployment runs it (`image`; `pod_runtime` reads what the pod spec asks of the
runtime, `confine` applies it inside the container's namespaces).

It lives outside `tests/` so that benchmarks never import test modules, and outside any conftest so that
conftests hold fixtures only.
"""
