# One command each, on a fresh machine: `make demo` and `make test` create .venv and install
# everything first. Override TORCH_SPEC on machines without the local torch 2.14.1 files
# (e.g. aarch64: TORCH_SPEC="torch==2.9.1 torchvision==0.24.1").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test test-fast test-isa tolerance-audit demo bench clean os-packages mutants gpu-bundle gpu-check

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e '.[test]'
	# pinned-ancient packages, installed without their pins (they run fine on current torch/numpy):
	# facenet-pytorch for the FaceNet metrics, pyiqa for the NIQE cross-check in the tests; DISTS-pytorch (MIT,
	# 20 kB) ships DISTS' official weights.pt and is the reference the DISTS test compares with; timm + einops
	# build pyiqa's MANIQA, the reference of the MANIQA test; openai-clip (+ ftfy, regex, wcwidth, and setuptools
	# < 81 for its pkg_resources import) is pyiqa's clip import and the CLIP-IQA test's reference tokenizer;
	# facexlib (AWing's FAN) and gfpgan (ResNetArcFace = arcface-pytorch's resnet_face18) are the reference
	# networks of lmd-awing and deg-vqfr (tests/test_vqfr_metrics.py)
	$(BIN)/python -m pip install --no-deps facenet-pytorch==2.6.0 pyiqa==0.1.16 DISTS-pytorch==0.1 timm==1.0.31 einops==0.8.2 \
		openai-clip==1.0.1 ftfy==6.3.1 regex==2026.11.19 wcwidth==0.9.4 "setuptools<81" facexlib==0.3.0 gfpgan==1.3.8
	@$(BIN)/python -c "import torch; print('torch', torch.__version__)"
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests use, installed here when running as root (CI); otherwise those tests
# skip with the install command: headless Chromium (the HTML report test), pdflatex with booktabs,
# xcolor, graphicx and multirow (the LaTeX compile test), and Slurm with munge (the reproduce test starts
# a one-node cluster as root).
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
os-packages:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		$(APT_INSTALL) chromium >/dev/null; } || \
		echo "chromium not installed (needs root): the HTML report test will skip"
	@{ command -v pdflatex >/dev/null 2>&1 && kpsewhich multirow.sty >/dev/null 2>&1; } || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && $(APT_INSTALL) --no-install-recommends \
		texlive-latex-recommended texlive-latex-extra >/dev/null; } || \
		echo "pdflatex not installed (needs root): the LaTeX compile test will skip"
	@{ command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; } || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && $(APT_INSTALL) --no-install-recommends \
		slurm-wlm munge >/dev/null; } || \
		echo "slurm-wlm / munge not installed (needs root): the Slurm executor test will skip"

test: $(STAMP) os-packages
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The fast tests as another CPU computes them: ATen's portable kernels (no AVX2 / AVX-512) on one thread.
# Run this (and `make tolerance-audit`) before changing any float tolerance (README: Tests and benchmarks).
test-isa: $(STAMP)
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(BIN)/pytest -m "not slow"

# Every passing numeric check's observed / allowed ratio under default and AVX2 kernels, 1 and 2 threads
# and the slow tests under default:2 and avx2:1 (tests/tolerance_audit.py; ~35 minutes on 2 cores): writes
# benchmarks/results/tolerance_audit.md
tolerance-audit: $(STAMP)
	$(BIN)/python tests/tolerance_audit.py -m "not slow" --slow-configs default:2,avx2:1

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

# The device check (benchmarks/gpu_check.py; benchmarks/README.md). `make gpu-bundle` here gathers what
# the device machine lacks (it has torch 2.11 and no network): the wheels the metrics and the baselines use
# (diffusers and what its import needs: DifFace's UNet)
# and the shared faces, in git-ignored folders that the device call carries (.whl, .gpu_data).
GPU_WHEELS := torch-fidelity==0.4.0 lpips==0.1.4 spandrel==0.4.2 spandrel-extra-arches==0.2.0 facenet-pytorch==2.6.0 \
	diffusers==0.42.1 huggingface_hub==2.4.0 httpx2==2.17.0 httpcore2==2.17.0 h11==0.16.0 anyio==4.16.0 idna==3.21 \
	certifi==2026.10.19.post1 importlib_metadata==10.2.0 zipp==4.1.2 regex==2026.11.19 PyYAML==6.0.4 \
	open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 tqdm==4.70.1 transformers==5.25.0 tokenizers==0.23.3 \
	kernels==0.19.1 tomlkit==0.15.3 sentencepiece==0.2.3 safetensors==0.8.0 filelock==4.3.2
gpu-bundle:
	rm -rf .whl && mkdir -p .whl .gpu_data
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	@if [ -d ../shared/data/hr_faces_128 ]; then rm -rf .gpu_data/hr_faces_128 && \
		cp -r ../shared/data/hr_faces_128 .gpu_data/; else echo "../shared absent: the check uses scikit-image's faces"; fi
	@du -sh .whl .gpu_data

# On the device machine (its own python3): install the carried wheels beside its torch, run the check.
gpu-check:
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
	PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --budget-s $${BUDGET_S:-300} $(GPU_CHECK_ARGS)
