# make demo: set-up + the local stack + the main job.  make test: set-up + the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IMGSIM := $(VENV)/bin/imgsim
STAMP := $(VENV)/.installed-stamp

.PHONY: setup browser test unit integration lint lock demo up down status package mwaa bench eval clean

# torch goes in first and alone: the CPU build (2.13.0) that lies on this disk. Nothing the
# project installs afterwards may replace it (no torchvision, open_clip or timm). Everything
# else comes at the versions the suite last passed with (constraints.txt, from `make lock`).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]" -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser tests (tests/browser, the e2e demo path): Playwright drives
# it through executable_path, since its own browser download does not work offline. apt runs
# only when the browser is missing (with sudo unless root).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)

# ruff (lint and format) and mypy (.pre-commit-config.yaml runs the same three), and the
# package layers of ARCHITECTURE.md with import-linter (the contract is in pyproject.toml).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

# The tiers are markers that tests/conftest.py gives by folder and fixture (pyproject.toml lists
# them). The fast tests: pure logic, no servers and no model (seconds).
unit: setup
	$(PY) -m pytest -m "not (stack or model)"

# The middle tier: the API, ingest, embedding and lookups on moto and the emulators, and the
# models; not Airflow, the browser, the whole stack or the AWS packages (Lambda layer, MWAA venv).
integration: setup
	$(PY) -m pytest -n 4 --dist loadfile -m "(stack or model) and not (airflow or browser or e2e or mwaa or package)"

# Test files spread over 3 workers (pytest-xdist, whole files per worker so module fixtures are
# shared): most of the suite waits on servers, Airflow and subprocesses, not on the 2 cores.
# The 25 slowest steps are listed at the end, to see where the suite's time goes.
test: setup lint browser
	$(PY) -m pytest -n 3 --dist loadfile --durations=25

# Pin what the suite passed with: every installed distribution but the project and torch.
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^torch==' > constraints.txt

demo: setup
	$(IMGSIM) demo

up: setup
	$(IMGSIM) up

down:
	$(IMGSIM) down

status:
	$(IMGSIM) status

# The Lambda code package (pipeline/ + lambdas/) and the dependencies layer, stripped to fit
# Lambda's 250 MB unzipped limit: build/imgsim.zip and build/imgsim-deps-layer.zip.
package: setup
	$(IMGSIM) build lambda build

# The Amazon MWAA bundle: build/mwaa/{dags/,requirements.txt,startup.sh} (docs/deploy.md, MWAA).
# Reads AWS_REGION (the serving images are looked up for it), IMGSIM_BUCKET,
# IMGSIM_EMBED_QUEUE_URL, IMGSIM_MODEL_DATA_URL, IMGSIM_SAGEMAKER_ROLE_ARN, ...
mwaa: setup
	$(IMGSIM) build mwaa build/mwaa

# Embedding throughput vs its baselines (about 2 minutes), then similarity lookup latency vs
# faiss, the seed design and a bare read (about 15 minutes: the seed design is slow on moto).
bench: setup
	$(PY) bench/embed_throughput.py
	$(PY) bench/similarity.py

# Retrieval quality (docs/quality.md): the shipped photos, then a seeded stratified
# 2,000-image subset of Fashion-MNIST (Debian's dataset-fashion-mnist, installed if missing;
# apt needs root), each with four models in-process. Tens of minutes on two cores.
EVAL_MODELS := --model color-layout-v1 --model efficientnet-lite0-imagenet \
	--model efficientnet-lite0-imagenet-int8 --model clip-vit-b-32-random-init-seed0
FASHION_MNIST := /usr/share/datasets/fashion-mnist
eval: setup
	$(IMGSIM) eval samples/photos $(EVAL_MODELS)
	test -d $(FASHION_MNIST) || (apt-get update && apt-get install -y dataset-fashion-mnist)
	$(IMGSIM) eval $(FASHION_MNIST) --limit 2000 $(EVAL_MODELS)

clean:
	rm -rf build .pytest_cache .ruff_cache
