# Two commands: `make demo` and `make test`. Only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# pytest workers: all cores, capped at 4 (CI has 2)
JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: demo detect-demo test lint format bench bench-distributed clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

NATIVE := setup.py $(wildcard src/cnnkit/functional/_native*.c src/cnnkit/functional/_native*.h)

$(STAMP_RUN): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[onnx,dashboard]'
	touch $@

$(STAMP_TEST): pyproject.toml $(NATIVE) | $(PY)
	$(PIP) install --quiet -e '.[test,onnx]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(PY) examples/demo.py

# the lecture's YOLO example end to end: train TinyYOLO on digit scenes (once; an
# interrupted run is resumed), evaluate mAP@0.5, detect on four new scenes
MNIST ?= ../shared/data/mnist
detect-demo: $(STAMP_RUN)
	@if [ -f runs/yolo/config.json ]; then echo "runs/yolo is trained already"; \
	elif [ -f runs/yolo/config.json.running ]; then $(VENV)/bin/cnnkit train --resume --out runs/yolo; \
	else $(VENV)/bin/cnnkit train --model tinyyolo --data digit-scenes:$(MNIST) --out runs/yolo; fi
	$(VENV)/bin/cnnkit evaluate runs/yolo
	$(PY) examples/make_scenes.py $(MNIST) runs/scenes --n 4 --seed 1
	$(VENV)/bin/cnnkit detect runs/yolo runs/scenes/scene_0.png runs/scenes/scene_1.png \
		runs/scenes/scene_2.png runs/scenes/scene_3.png --out runs/boxes.json --draw runs/detect.png

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
	OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 $(PY) benchmarks/bench_peers.py --envs
	$(PY) benchmarks/distributed.py

# the data-parallel part of `make bench` alone (mpiexec over the [mpi] extra)
bench-distributed: $(STAMP_TEST)
	$(PY) benchmarks/distributed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build
	find src -name '*.so' -delete
