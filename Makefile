# One-command setup: `make demo` and `make test` create (or reuse) the virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build
STAMP := $(VENV)/.installed
ARCH := $(shell uname -m)
# The torch build this machine carries on disk (x86_64: 2.14.1; aarch64: 2.9.1, CPU).
ifeq ($(ARCH),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml PromptEngines/requirements.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/ivseg demo --out demo_out

test: setup
	cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(abspath $(PY)) >/dev/null
	cd $(BUILD) && ctest --output-on-failure --verbose

bench: setup
	$(PY) bench/tracer3d_bench.py
	$(PY) bench/panel_responsiveness.py
	$(PY) bench/tracer3d_vein_stress.py

clean:
	rm -rf $(BUILD) demo_out
