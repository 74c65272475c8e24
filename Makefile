# make demo: set-up + the local stack + the main job.  make test: set-up + the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test unit lint lock demo up down status package bench clean

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

# ruff (lint and format) and mypy; .pre-commit-config.yaml runs the same three.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The fast tests: pure logic, no servers (seconds).
unit: setup
	$(PY) -m pytest tests/unit

test: setup lint
	$(PY) -m pytest

# Pin what the suite passed with: every installed distribution but the project and torch.
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^torch==' > constraints.txt

demo: setup
	$(PY) -m pipeline.local demo

up: setup
	$(PY) -m pipeline.local up

down:
	$(PY) -m pipeline.local down

status:
	$(PY) -m pipeline.local status

# The Lambda code package (pipeline/ + lambdas/) and the dependencies layer, stripped to fit
# Lambda's 250 MB unzipped limit: build/imgsim.zip and build/imgsim-deps-layer.zip.
package: setup
	$(PY) -m pipeline.local.lambda_layer build

# Embedding throughput vs its baselines (about 2 minutes), then similarity lookup latency vs
# faiss, the seed design and a bare read (about 15 minutes: the seed design is slow on moto).
bench: setup
	$(PY) bench/embed_throughput.py
	$(PY) bench/similarity.py

clean:
	rm -rf build .pytest_cache .ruff_cache
