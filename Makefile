# Two commands on a fresh machine: `make demo` (the main job on the embedded demo scene) and
# `make test`. Both set up .venv first; set-up is idempotent and takes seconds once done.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup test-setup test demo gpu-check clean

setup: $(STAMP)

test-setup: setup
	@# tests/test_viewer_browser.py drives a headless Chromium; install Debian's when missing (needs root / sudo).
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		echo "installing chromium (for the viewer's browser test)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium) >/dev/null || \
		{ echo "error: the viewer's browser test needs Chromium: run 'apt-get install chromium' as root"; exit 1; }; }

$(STAMP): pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@# open3d's wheel links against the system libusb; install it when missing (needs root / sudo).
	@ldconfig -p | grep -q libusb-1.0 || { \
		echo "installing libusb-1.0-0 (needed by open3d)"; \
		(apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null || \
		{ echo "error: open3d needs libusb-1.0: run 'apt-get install libusb-1.0-0' as root"; exit 1; }; }
	$(PYTHON) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PYTHON) -m pip install -q --disable-pip-version-check -e ".[dev,adapters]"
	@touch $(STAMP)

test: test-setup
	$(PYTHON) -m pytest -q

# make demo: the spectrum figure, then a rate-distortion sweep on the embedded demo scene (preset
# configs/nerf/demo.yaml, 45 CPU seconds of training per run): dense at width 64, low-rank rank 8
# (both inits), sine rank 8 and the widest dense network of the same size; its report, and an orbit
# video per run, go to outputs/demo/rd/<timestamp>/. DEMO_FLAGS adds flags to the sweep command.
DEMO_FLAGS ?=
demo: setup
	$(PYTHON) scripts/spectrum.py --out outputs/demo/spectrum.png
	out=outputs/demo/rd/$$(date +%Y%m%d-%H%M%S); \
	$(PYTHON) scripts/rate_distortion.py nerf --scene demo --preset demo --kinds dense,lowrank,sine --ranks 8 --widths 64 --budget-s 45 --lr-probe-s 0 --out $$out $(DEMO_FLAGS) && \
	echo "sine run (orbit video, test renders): $$out/runs/sine-w64-k8-s0"

gpu-check: setup
	$(PYTHON) benchmarks/gpu/check.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
