# syntax=docker/dockerfile:1
# The training image: the whole project with the train extra, DVC inside. CPU by default; for CUDA build with
#   --build-arg TORCH_INDEX=https://pypi.org/simple     (PyPI's Linux torch wheels are the CUDA builds; they carry
#                                                        the CUDA libraries, so only the host driver is needed)
# and run with `docker run --gpus all`. Build from the repository root:
#   docker build -f docker/train.Dockerfile --build-arg GIT_SHA="$(git rev-parse HEAD)" -t cifar-train .
# Run (pulls data from the remote, then rebuilds the pipeline, whose train stage needs a GPU; docs/deploy.md has
# the CPU recipe):
#   docker run --rm --gpus all -e DVC_REMOTE=gcs -v "$HOME/.config/gcloud:/home/trainer/.config/gcloud:ro" cifar-train
FROM python:3.11.14-slim-bookworm

# The CPU index serves torch==X+cpu, a local version that satisfies the `torch==X` pin in requirements-train.txt
# and is preferred over PyPI's CUDA build of X: a ~200 MB install instead of several GB.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The image has no .git (the build context leaves it out), so the commit is handed in for the model card.
ARG GIT_SHA=unknown

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    WANDB_MODE=offline \
    GIT_SHA=${GIT_SHA} \
    PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN useradd --create-home --uid 10001 --shell /bin/bash trainer \
    && install -d -o 10001 -g 10001 /app

# The heavy layer (torch & co.) depends only on the pins, so code changes rebuild in seconds.
# dvc-gs: the gs:// remote the deployed system pulls from; not in requirements-train.txt because a developer
# machine only ever uses the team's local remote.
COPY requirements-train.txt /tmp/requirements-train.txt
RUN python -m venv /opt/venv \
    && pip install --extra-index-url "${TORCH_INDEX}" -r /tmp/requirements-train.txt dvc-gs==3.1.0

WORKDIR /app
COPY --chown=10001:10001 . .
# The editable install records the project itself (and proves the train extra resolves to what is installed).
RUN pip install --extra-index-url "${TORCH_INDEX}" -e '.[train]'

USER 10001:10001
# No .git in the image, so DVC must be told it works without an SCM. Run as the user, so that what DVC creates
# under .dvc/ (config.local, tmp/) stays writable for `dvc pull` and `dvc repro` at run time.
RUN dvc config --local core.no_scm true
ENTRYPOINT ["sh", "/app/docker/train-entrypoint.sh"]
CMD ["dvc", "repro"]
