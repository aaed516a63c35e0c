"""Support code that tests and benchmarks share: THE gunicorn command on free ports (`server`), load on
/predict (`load`), reading an exposition (`exposition`) and process inspection (`processes`).

It lives outside `tests/` so that benchmarks never import test modules, and outside any conftest so that
conftests hold fixtures only.
"""
