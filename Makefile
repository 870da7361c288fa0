# Two commands: `make demo` and `make test`. Only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# pytest workers: all cores, capped at 4 (CI has 2)
JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: demo test lint format bench bench-distributed clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

NATIVE := setup.py $(wildcard src/cnnkit/functional/_native*.c src/cnnkit/functional/_native*.h)

$(STAMP_RUN): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[onnx]'
	touch $@

$(STAMP_TEST): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[test,onnx]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(PY) examples/demo.py

test: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) -m pytest -n $(JOBS) -q

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP_TEST)
	$(PY) benchmarks/run.py
	OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 $(PY) benchmarks/bench_peers.py --envs
	$(PY) benchmarks/distributed.py

# the data-parallel part of `make bench` alone (mpiexec over the [mpi] extra)
bench-distributed: $(STAMP_TEST)
	$(PY) benchmarks/distributed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build
	find src -name '*.so' -delete
