# The README's two commands: `make demo` and `make test`. Each sets up everything it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test bench lint clean-venv

$(STAMP): pyproject.toml constraints.txt
	@# open3d links against libusb-1.0 (a system library, not on PyPI).
	@if ! ldconfig -p | grep -q libusb-1.0; then \
		echo "Installing libusb-1.0-0 (needed by open3d) with apt-get"; \
		apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null || \
		{ echo "ERROR: could not install libusb-1.0-0; run 'apt-get install -y libusb-1.0-0' as root" >&2; exit 1; }; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# nuscenes-devkit 1.2.0 declares numpy<2 but what we use works with numpy 2; its other deps are in `dev`.
	$(PY) -m pip install --quiet --no-deps nuscenes-devkit==1.2.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m lightning_hpml.demo --config configs/demo_fadnet_synthetic.yaml --output-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

bench: install
	$(PY) benchmarks/stereo_latency.py

lint: install
	$(VENV)/bin/ruff check lightning_hpml tests

clean-venv:
	rm -rf $(VENV)
