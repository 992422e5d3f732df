# One-command entry points. Both create (or reuse) the virtual environment in $(VENV).
#   make book  - set up, run the default reproduction (profile $(PROFILE)), build the book
#   make test  - set up, run the test suite
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?= default
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ca_core-installed

.PHONY: env book reproduce test browser clean

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

reproduce: env
	$(PY) -m ca_core.pipeline --profile $(PROFILE)

book: reproduce
	@echo "book: built at book/_build/html/index.html"

test: env
	$(PY) -m pytest -q tests

clean:
	rm -rf book/_build book/generated runs
