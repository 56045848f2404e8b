# Common commands. `make run` and `make test` set up .venv on first use (idempotent).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per core of the 2-core reference machine. Whole test files
# go to one process (--dist loadfile), so a file's fixtures and JAX programs are built once.
TEST_WORKERS ?= 2

.PHONY: setup setup-gpu run reproduce reproduce-gpu online-gpu test test-slow test-all test-gpu bench bench-compare speed lint format lock clean

setup: $(STAMP)

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (set PYTHON=...)"'
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency pins change.
$(STAMP): pyproject.toml requirements.lock | $(PY)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# CUDA builds on a GPU machine (see README, "GPU installs").
setup-gpu: setup
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev,gpu]'

# The default experiment: every detector of its sweep; the sweep ends by writing
# results/<experiment>/report/ and printing the ranked table (benchmark/run/callbacks.py).
run: setup
	$(PY) -m benchmark -m $(ARGS)

# The source articles' setups (conf/experiment/paper_*.yaml), each sweeping frameworks, seeds and
# datasets, at SCALE=ci (this CPU, minutes) or SCALE=paper (the articles' sizes); then the
# claimed-vs-measured table results/reproduction/reproduction.md. Failed runs are listed there
# and make the target fail after the table is written. PAPERS="paper_2_... paper_3_..." picks
# setups.
SCALE ?= ci
PAPERS ?= $(sort $(basename $(notdir $(wildcard conf/experiment/paper_*.yaml))))
reproduce: setup
	status=0; \
	for e in $(PAPERS); do $(PY) -m benchmark -m experiment=$$e scale=$(SCALE) $(ARGS) || status=1; done; \
	$(PY) -m benchmark.report.reproduction results || status=1; \
	exit $$status

# The article sizes of the setups a 2-core CPU cannot finish within 2 hours each (timed in
# results/reproduction/README.md), on a GPU machine: one command.
PAPERS_GPU ?= paper_2_lstm_classifier paper_4_pretrained_transformer_pca paper_5_multimodal_fusion
reproduce-gpu: setup-gpu
	$(MAKE) reproduce SCALE=paper PAPERS="$(PAPERS_GPU)" ARGS="framework.device=cuda $(ARGS)"

# The online experiment's per-event cost on a GPU machine (CUDA wheels), in results/online_gpu/
# beside the CPU figures of results/online/.
online-gpu: setup-gpu
	$(PY) -m benchmark -m experiment=online experiment_name=online_gpu framework.device=cuda $(ARGS)

test: setup lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# One process: the slow tier's training checks were calibrated at PyTorch's default threads, and
# their margins do not survive the different float sums of one thread per worker.
test-slow: setup
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Every CPU tier: the fast tier, the slow tier, then the pytest-benchmark suite (timed).
test-all: setup lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)
	$(PY) -m pytest -m benchmark --benchmark-enable $(PYTEST_ARGS)

test-gpu: setup-gpu
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

# pytest-benchmark suite (data stage, loaders, every detector x framework beside its plain
# reference); the JSON lands in results/bench/.
bench: setup
	mkdir -p results/bench
	$(PY) -m pytest -m benchmark --benchmark-enable --benchmark-only \
		--benchmark-json=results/bench/bench-$$(date -u +%Y%m%d-%H%M%S).json $(PYTEST_ARGS)

# This checkout against REF, measured alternately in one job: fails when >15% slower.
REF ?= HEAD~1
bench-compare: setup
	$(PY) -m benchmark.speed.compare --ref $(REF) $(ARGS)

# The timing table (PRESET=cpu|gpu|quick): results/speed/*.{json,md}.
PRESET ?= cpu
speed: setup
	$(PY) -m benchmark.speed --preset $(PRESET) $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lock: setup
	head -n 2 requirements.lock > requirements.lock.new
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' >> requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
