# syntax=docker/dockerfile:1
# The serving image: Python, requirements-serve.lock (requirements-serve.txt with hashes), serve/, contract/ and the shipped model. Nothing from training.
# Build from the repository root:  docker build -f docker/serve.Dockerfile -t cifar-serve .

# ---- builder: resolve the pinned wheels into a venv. Every serving dependency ships manylinux wheels, so no
# compiler is installed here either; the stage keeps pip and its work out of the final image.
FROM python:3.11.14-slim-bookworm AS builder

# pip byte-compiles what it installs (kept: the runtime never writes .pyc, so cold starts need them here).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only the lock file, so this layer is rebuilt when the pins change, not on every code change.
# --require-hashes: every file installed is the one locked (`make lock`), whatever the index serves.
# --only-binary: a dependency that suddenly needs compiling should fail the build, not pull in a toolchain.
# pip and setuptools are not needed at run time (nothing imports them): uninstalled, they are neither shipped
# nor an attack surface that image scanners flag.
COPY requirements-serve.lock /tmp/requirements-serve.lock
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r /tmp/requirements-serve.lock \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

# ---- runtime
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="cifar-serve" \
      org.opencontainers.image.description="CIFAR-10 picture classifier: Starlette + onnxruntime, no torch" \
      org.opencontainers.image.licenses="MIT"

# PORT=8080 is Cloud Run's convention (it sets PORT itself; the default makes `docker run` behave the same).
# HOST=0.0.0.0 because inside a container the loopback default would be unreachable.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOST=0.0.0.0 \
    PORT=8080 \
    MODEL_PATH=/app/shipped/model.int8.onnx

# A fixed numeric uid, so Kubernetes-style runAsNonRoot checks can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# The model changes less often than the code: its layer first, so code-only changes reuse it.
COPY shipped/ shipped/
# contract/ is the model-file format the service checks the model against (stdlib only, no extra dependency).
COPY contract/ contract/
COPY serve/ serve/
# Byte-compiled at build time because the container never writes (PYTHONDONTWRITEBYTECODE, read-only root in
# compose): without this every cold start on Cloud Run would recompile serve/ and contract/ in memory.
RUN python -m compileall -q contract serve

USER 10001:10001
EXPOSE 8080

# No curl in slim images: python's urllib is already here. PORT is read at check time so an overridden PORT
# (compose runs it on 8000) is still the one probed. Cloud Run ignores HEALTHCHECK; docker and compose use it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=2)"]

CMD ["python", "-m", "serve"]
