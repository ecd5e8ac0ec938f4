# Two commands on a fresh machine:  `make demo`  then  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LS_VENV := .venv-labelstudio
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint format bench clean protos

# The project's environment: every extra, then Detectron2 (patched sdist, see third_party/detectron2).
$(VENV)/.installed: pyproject.toml third_party/detectron2/install.sh third_party/detectron2/detectron2-0.6.patch
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[all]'
	bash third_party/detectron2/install.sh $(PY)
	touch $@

# Label Studio runs from an environment of its own (it pins old numpy/Django).
$(LS_VENV)/.installed: labeling/requirements-labelstudio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q -r labeling/requirements-labelstudio.txt
	touch $@

install: $(VENV)/.installed $(LS_VENV)/.installed

demo: install
	$(VENV)/bin/asmspotter demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	bash tests/setup/system_packages.sh
	$(VENV)/bin/python -m pytest

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerate asmspotter/v1/*_pb2*.py from protos/ (committed; a test checks they are fresh).
protos: $(VENV)/.installed
	$(PY) protos/generate.py

# Every measurement as it is; the experiments (a variant to choose, or a recipe run to start
# from) are run by hand as their docstrings show.
EXPERIMENTS := benchmarks/bench_verifier_variants.py benchmarks/bench_detector_self_training.py
bench: $(VENV)/.installed
	for b in $(filter-out $(EXPERIMENTS),$(wildcard benchmarks/bench_*.py)); do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LS_VENV) out
