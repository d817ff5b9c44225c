# hipfrac: `make all` regenerates every figure and table; `make test` runs the whole test suite.
# Targets are self-documenting: `make help`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# parallel by default (one job per core: notebooks are independent papermill processes); the output
# of each target is shown whole when it finishes. Override with make -j1.
NPROC := $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += --no-builtin-rules -j$(NPROC) --output-sync=target

# one BLAS thread per process: notebooks run side by side (make -j2) on 2 cores, and threaded BLAS on
# small matrices made some fits 6x slower
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SETUP  := $(VENV)/.setup-done
STAMPS := data/.stamps

# Runs (params/<run>.yaml) executed by `make all`; override: make all RUNS="default revision2"
RUNS ?= default
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NB_NAMES  := $(notdir $(basename $(NOTEBOOKS)))
LIB       := $(shell find lib/hipfrac -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.csv' -o -name '*.json' \) | sort)
SYNTH_LIB := $(filter lib/hipfrac/synth% lib/hipfrac/geography% lib/hipfrac/schema% lib/hipfrac/data/%,$(LIB))

.PHONY: help all setup data cohort notebooks test test-fast test-slow lint smoke bench lab supplement clean lock

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

all: setup $(foreach r,$(RUNS),outputs/.work/$(r).published) ## set up, then regenerate every figure and table for every run in RUNS

setup: $(SETUP) ## create .venv with the pinned dependencies, install hipfrac and its Jupyter kernel

$(SETUP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name hipfrac --display-name "Python (hipfrac)" >/dev/null
	@touch $@

data: setup $(foreach r,$(RUNS),$(STAMPS)/$(r).synth) ## generate the synthetic registry of every run (if missing)
cohort: setup $(foreach r,$(RUNS),$(STAMPS)/$(r).cohort) ## build the analysis cohort of every run
notebooks: setup $(foreach r,$(RUNS),$(foreach n,$(NB_NAMES),outputs/.work/$(r)/$(n)/$(n).ipynb)) ## execute every notebook of every run

# --- per-run rules ------------------------------------------------------------------------------
define RUN_RULES
$(STAMPS)/$(1).synth: params/$(1).yaml $(SYNTH_LIB) | $(SETUP)
	@mkdir -p $(STAMPS)
	$(PY) -m hipfrac synth --params params/$(1).yaml
	@touch $$@

$(STAMPS)/$(1).cohort: $(STAMPS)/$(1).synth params/$(1).yaml $(LIB) | $(SETUP)
	$(PY) -m hipfrac cohort --params params/$(1).yaml
	@touch $$@

# notebooks run into the staging area outputs/.work/<run>/; the run-level disclosure audit checks the
# union of their outputs (re-executing a notebook that must withhold more); the run is published to
# outputs/<run>/ only when every notebook succeeded and the scan of exactly those files is clean
outputs/.work/$(1).published: $(foreach n,$(NB_NAMES),outputs/.work/$(1)/$(n)/$(n).ipynb)
	$(PY) -m hipfrac audit --params params/$(1).yaml
	$(PY) -m hipfrac manifest --params params/$(1).yaml --run-dir outputs/.work/$(1)
	$(PY) -m hipfrac scan outputs/.work/$(1)
	$(PY) -m hipfrac publish --params params/$(1).yaml
	@touch $$@
endef

define NB_RULE
outputs/.work/$(1)/$(2)/$(2).ipynb: notebooks/$(2).ipynb params/$(1).yaml $(STAMPS)/$(1).cohort $(LIB) | $(SETUP)
	$(PY) -m hipfrac notebook notebooks/$(2).ipynb --params params/$(1).yaml
endef

ALL_RUNS := $(sort $(RUNS) smoke)
$(foreach r,$(ALL_RUNS),$(eval $(call RUN_RULES,$(r))))
$(foreach r,$(ALL_RUNS),$(foreach n,$(NB_NAMES),$(eval $(call NB_RULE,$(r),$(n)))))

# --- tests ----------------------------------------------------------------------------------------
lint: $(SETUP) ## ruff on the package and tests
	$(PY) -m ruff check lib tests

smoke: $(SETUP) outputs/.work/smoke.published ## execute every notebook on params/smoke.yaml (tiny cohort) and scan the outputs

test: $(SETUP) ## the whole suite: lint, smoke run of every notebook, pytest (CI runs this)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory smoke
	$(PY) -m pytest -n 2 -q tests

test-slow: $(SETUP) ## slow statistical checks (national scale, many seeds); not in CI
	$(PY) -m pytest -q -m slow tests

# --- other ----------------------------------------------------------------------------------------
bench: $(SETUP) ## time every stage at national and Nordic scale -> outputs/bench/bench.json
	$(PY) -m hipfrac bench --scale 1 --scale 4

supplement: all ## build the static HTML supplement (and zip) of every run in RUNS
	$(foreach r,$(RUNS),$(PY) -m hipfrac supplement --params params/$(r).yaml;)

lab: $(SETUP) ## start JupyterLab on the project's kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

lock: ## re-resolve the pinned dependencies (requirements.lock; update environment.yml to match)
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet -e . \
	  && .venv-lock/bin/pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)==' > requirements.lock.new \
	  && rm -rf .venv-lock && echo "wrote requirements.lock.new: review, then move over requirements.lock"

clean: ## remove generated data and outputs (never source); keeps .venv
	rm -rf data/synthetic data/cohort data/bench $(STAMPS) outputs/*/ outputs/.work .pytest_cache
