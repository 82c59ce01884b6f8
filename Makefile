# odesr: every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
export ODESR_DATA ?= $(abspath ../shared/datasets)

.PHONY: help install test test-slow test-all lint bench bench-save bench-eval clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install odesr with its dev extras

# every target with its line (the `## ...` after it); `python -m bench --help` lists bench's commands
help:  ## this list
	@awk -F':.*## ' '/^[a-z][a-z0-9 -]*:.*## /{printf "  %-52s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# two test processes (pytest-xdist), one thread each (tests/conftest.py); `make test` leaves out
# the slower end-to-end and real-data checks (marked slow), which `make test-slow` runs; CI both
test: $(VENV)/.installed  ## the fast tests (not slow), two processes
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: $(VENV)/.installed  ## the slow end-to-end and real-data tests
	$(PY) -m pytest -q -n 2 -m slow

test-all: $(VENV)/.installed  ## every test
	$(PY) -m pytest -q -n 2

lint: $(VENV)/.installed  ## ruff check of odesr, baselines, bench, tests
	$(VENV)/bin/ruff check odesr baselines bench tests

# pytest-benchmark suite of the hot paths; each prints a ratio against a reference timed in the
# same run, next to bench/benchmarks/baseline.json (bench-save rewrites it)
BENCH_PYTEST = $(PY) -m pytest bench/benchmarks -q -p no:cacheprovider --benchmark-enable \
	--benchmark-columns=min,mean,rounds --benchmark-sort=name
bench: $(VENV)/.installed  ## pytest-benchmark suite of the hot paths vs bench/benchmarks/baseline.json
	$(BENCH_PYTEST)

bench-save: $(VENV)/.installed  ## the same, rewriting the baseline
	ODESR_BENCH_SAVE=1 $(BENCH_PYTEST)

# whole-process bicubic B100 x 30 scales vs the peer pipeline; network inference and training
# steps vs the matmul peak (run it on a quiet machine: nothing else computing)
bench-eval: $(VENV)/.installed  ## whole-process evaluation, inference and training speed
	$(PY) -m bench.speed_eval
	$(PY) -m bench.inference_speed --skip-wall
	OMP_NUM_THREADS=1 $(PY) -m bench.train_speed --steps 10

clean:  ## remove .venv and the caches
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

# ---- experiments (bench/): run then report; PROFILE=smoke|cpu|paper (default cpu) ----------
BENCH_ARGS ?=
.PHONY: table1 solver-ablation extrapolation claims scaling demo data regress regress-update quality

# scaling: the budget ladder (gaps against training steps, extrapolated to the paper's 600k)
table1 solver-ablation extrapolation claims scaling: $(VENV)/.installed  ## run then report that experiment (PROFILE=smoke|cpu|paper)
	$(PY) -m bench run $@ --profile $(PROFILE) $(BENCH_ARGS)
	$(PY) -m bench report $@ --profile $(PROFILE) $(BENCH_ARGS)

# the whole pipeline on scikit-image's bundled images (no data, no downloads) -> results/demo/
demo: $(VENV)/.installed  ## the whole pipeline on scikit-image's images -> results/demo/
	$(PY) -m bench.demo

# download + verify + unpack the benchmark sets listed in bench/datasets.yaml into $$ODESR_DATA
data: $(VENV)/.installed  ## download and verify the benchmark datasets into $$ODESR_DATA
	$(PY) -m bench.fetch_data --data-root $(ODESR_DATA)

# smoke profile end to end vs bench/baselines/smoke.csv (also run by `make test-slow`)
regress: $(VENV)/.installed  ## smoke profile end to end vs bench/baselines/smoke.csv
	$(PY) -m bench.regress --data-root $(ODESR_DATA)

regress-update: $(VENV)/.installed  ## rewrite bench/baselines/smoke.csv
	$(PY) -m bench.regress --data-root $(ODESR_DATA) --update

# the bundled model on Set5 x2/x4 >= bicubic + margin and within 0.02 dB of
# bench/baselines/bundled-set5.csv (also run by `make test-slow`)
quality: $(VENV)/.installed  ## the bundled model on Set5 vs bicubic and bench/baselines/bundled-set5.csv
	$(PY) -m bench.quality --data-root $(ODESR_DATA)
