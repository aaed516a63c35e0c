# The model server image: `gunicorn -c app/gunicorn.conf.py app.wsgi:app` as uid 10001, with the model
# trained at build time. Runs on a read-only root filesystem: the only writable paths are
# $PROMETHEUS_MULTIPROC_DIR and /tmp, mounted as volumes (manifests/deployment.yaml), and /dev/shm, the tmpfs
# every container runtime mounts (gunicorn keeps its worker heartbeat files there). docs/cluster.md has the
# whole runtime contract; tests/image builds this file and runs the image that way.
#
#   docker build -t wine-classifier:0.1.0 .       (or: minikube image build -t wine-classifier:0.1.0 .)
#   docker build --build-arg TRAIN_ARGS="--seed 7" -t wine-classifier:0.1.0-canary .     (the canary, canary/)

# ---- build: dependencies into a virtualenv, then the model artefact -------------------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1

WORKDIR /build

# Dependencies first, so that editing app/ does not reinstall them: the runtime dependencies declared in
# pyproject.toml (not the dev tools), at the versions requirements.lock pins. Only the dependencies are
# installed, not the project: the server runs the app/ source copied below.
COPY pyproject.toml requirements.lock ./
RUN python -m venv "$VIRTUAL_ENV" \
    && python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install --no-cache-dir --requirement requirements.txt --constraint requirements.lock

COPY app ./app
# Training on a dataset shipped with scikit-learn: no download. The version names the training inputs, so the
# image serves the version `python -m app.train` writes anywhere; the fitted bits follow the build machine's
# BLAS kernel, and answers agree with other builds within rounding (app/train.py).
# TRAIN_ARGS makes another model (another version) for a canary image, e.g. `--seed 7` (canary/).
# Unquoted on purpose: the shell splits `--seed 7` into two arguments, and an empty value into none. No pipe
# and no SHELL instruction: podman and buildah build the OCI format by default, which drops SHELL (with a
# warning), so a `set -o pipefail` there would silently not apply.
ARG TRAIN_ARGS=""
RUN python -m app.train --out /opt/model $TRAIN_ARGS

# ---- runtime ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="wine-classifier" \
      org.opencontainers.image.description="scikit-learn wine classifier behind Flask + gunicorn, with Prometheus metrics"

# The contract the manifests rely on (docs and manifests/deployment.yaml set the same values).
# BLAS threads pinned to 1: each gunicorn worker is one CPU's worth of work.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8000 \
    METRICS_PORT=9100 \
    MODEL_DIR=/opt/model \
    PROMETHEUS_MULTIPROC_DIR=/run/prometheus-multiproc \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

# A named user for the numeric uid (tools that look the user up find it), no home, no shell. The multiproc
# directory exists and is writable for a plain `docker run`; in Kubernetes a memory emptyDir replaces it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app \
    && mkdir -p /run/prometheus-multiproc \
    && chown 10001:10001 /run/prometheus-multiproc

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/model /opt/model

WORKDIR /srv
COPY app ./app
# Bytecode compiled now: at run time the filesystem is read-only and every worker would recompile.
RUN python -m compileall -q app

# Numeric, so that runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001

EXPOSE 8000 9100

CMD ["gunicorn", "-c", "app/gunicorn.conf.py", "app.wsgi:app"]
