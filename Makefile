# Two commands: `make demo` and `make test`. Only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# pytest workers: all cores, capped at 4 (CI has 2)
JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: demo test lint format bench clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

NATIVE := setup.py $(wildcard src/cnnkit/functional/_native*.c src/cnnkit/functional/_native*.h)

$(STAMP_RUN): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[dashboard]'
	touch $@

$(STAMP_TEST): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[test,onnx]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(PY) examples/demo.py

# Debian's chromium for the browser tests of `cnnkit serve` (tests/serve): installed once
# with apt-get when run as root; without it those tests are skipped with the reason
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (apt-get, once)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      >/dev/null 2>&1 || echo "could not install chromium: browser tests will be skipped"; \
	  else echo "no chromium and no root apt-get: browser tests will be skipped"; fi; }

test: $(STAMP_TEST) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) -m pytest -n $(JOBS) -q

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP_TEST)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build
	find src -name '*.so' -delete
