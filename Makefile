# One command each, on a fresh machine: `make demo` and `make test` create .venv and install
# everything first. Override TORCH_SPEC on machines without the local torch 2.14.1 files
# (e.g. aarch64: TORCH_SPEC="torch==2.9.1 torchvision==0.24.1").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast demo bench clean chromium mutants

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e '.[test]'
	# pinned-ancient packages, installed without their pins (they run fine on current torch/numpy):
	# facenet-pytorch for the FaceNet metrics, pyiqa for the NIQE cross-check in the tests
	$(BIN)/python -m pip install --no-deps facenet-pytorch==2.6.0 pyiqa==0.1.16
	@$(BIN)/python -c "import torch; print('torch', torch.__version__)"
	touch $(STAMP)

install: $(STAMP)

# The HTML-report test opens the page in headless Chromium (Debian's package); installed here when
# running as root (CI), otherwise that one test skips with the install command.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed (needs root): the HTML report test will skip"

test: $(STAMP) chromium
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# one-line mutations (SCGAN, reliability, metrics) that the fast tests must catch (~15 minutes on 2 cores)
mutants: $(STAMP)
	$(BIN)/python tests/mutants.py

demo: $(STAMP)
	$(BIN)/scgan-bench demo

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_throughput.py
	$(BIN)/python benchmarks/metrics_throughput.py
	$(BIN)/python benchmarks/baselines_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info results/demo results/latest
