# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install hf_swa with what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
# A CPU build where one lies on disk; override for another build, e.g. TORCH=torch (CUDA from PyPI).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEEPSPEED_STAMP := $(VENV)/.deepspeed

.PHONY: install test test-fast lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# DeepSpeed (the optional `deepspeed` extra) builds from source; its tests skip where it is not installed.
$(DEEPSPEED_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation "deepspeed>=0.15" \
		|| echo "deepspeed did not install: its tests will be skipped"
	touch $(DEEPSPEED_STAMP)

test: lint $(STAMP) $(DEEPSPEED_STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not distributed"

# Lint and format check (ruff, configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --output_root outputs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_update.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
