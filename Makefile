# odesr: every target creates .venv itself when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
export ODESR_DATA ?= $(abspath ../shared/datasets)

.PHONY: install test test-slow test-all lint bench bench-save bench-eval clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# two test processes (pytest-xdist), one thread each (tests/conftest.py); `make test` leaves out
# the slower end-to-end and real-data checks (marked slow), which `make test-slow` runs; CI both
test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow"

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check odesr baselines bench tests

# pytest-benchmark suite of the hot paths; each prints a ratio against a reference timed in the
# same run, next to bench/benchmarks/baseline.json (bench-save rewrites it)
BENCH_PYTEST = $(PY) -m pytest bench/benchmarks -q -p no:cacheprovider --benchmark-enable \
	--benchmark-columns=min,mean,rounds --benchmark-sort=name
bench: $(VENV)/.installed
	$(BENCH_PYTEST)

bench-save: $(VENV)/.installed
	ODESR_BENCH_SAVE=1 $(BENCH_PYTEST)

# whole-process bicubic B100 x 30 scales vs the peer pipeline; network inference and training
# steps vs the matmul peak (run it on a quiet machine: nothing else computing)
bench-eval: $(VENV)/.installed
	$(PY) -m bench.speed_eval
	$(PY) -m bench.inference_speed --skip-wall
	OMP_NUM_THREADS=1 $(PY) bench/train_speed.py --steps 10

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

# ---- experiments (bench/): run then report; PROFILE=smoke|cpu|paper (default cpu) ----------
BENCH_ARGS ?=
.PHONY: table1 solver-ablation extrapolation claims scaling demo data regress regress-update quality

# scaling: the budget ladder (gaps against training steps, extrapolated to the paper's 600k)
table1 solver-ablation extrapolation claims scaling: $(VENV)/.installed
	$(PY) -m bench run $@ --profile $(PROFILE) $(BENCH_ARGS)
	$(PY) -m bench report $@ --profile $(PROFILE) $(BENCH_ARGS)

# the whole pipeline on scikit-image's bundled images (no data, no downloads) -> results/demo/
demo: $(VENV)/.installed
	$(PY) -m bench.demo

# download + verify + unpack the benchmark sets listed in bench/datasets.yaml into $(ODESR_DATA)
data: $(VENV)/.installed
	$(PY) -m bench.fetch_data --data-root $(ODESR_DATA)

# smoke profile end to end vs bench/baselines/smoke.csv (also run by `make test-slow`)
regress: $(VENV)/.installed
	$(PY) -m bench.regress --data-root $(ODESR_DATA)

regress-update: $(VENV)/.installed
	$(PY) -m bench.regress --data-root $(ODESR_DATA) --update

# the bundled model on Set5 x2/x4 >= bicubic + margin and within 0.02 dB of
# bench/baselines/bundled-set5.csv (also run by `make test-slow`)
quality: $(VENV)/.installed
	$(PY) -m bench.quality --data-root $(ODESR_DATA)
