# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv.
# torch is installed first, pinned to the CPU wheel on this machine's disk, so that no
# dependency pulls a multi-gigabyte CUDA build; the project install then keeps it.

PY := .venv/bin/python
STAMP := .venv/.effai-installed
TORCH := torch==2.13.0
# Data sets and toolchains that come from Debian (installed once by the bootstrap, as root).
DEBIAN_PACKAGES := dataset-fashion-mnist espeak-ng gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm

.PHONY: demo test lint bench bench-check bench-stale docs venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[all,dev,docs]'
	@$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'a dependency replaced torch: ' + v)"
	@bash scripts/ensure-chromium.sh
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@bash scripts/ensure-debian-packages.sh $(DEBIAN_PACKAGES)
	$(PY) -m effai.cli study --dataset mnist5k --out runs/demo

test: $(STAMP)
	@bash scripts/ensure-debian-packages.sh $(DEBIAN_PACKAGES)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	@$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else 'bench extra replaced torch: ' + v)"
	for b in $(filter-out benchmarks/common.py benchmarks/check.py,$(wildcard benchmarks/*.py)); do $(PY) $$b || exit 1; done

# Reruns the deterministic benchmarks at their CI settings and compares them with the committed
# results JSON; checks that every section of docs/benchmarks.md names its commit (benchmarks/check.py).
bench-check: $(STAMP)
	@bash scripts/ensure-debian-packages.sh $(DEBIAN_PACKAGES)
	$(PY) benchmarks/check.py

# Rewrites the provenance lines of docs/benchmarks.md: a table whose code changed since its run is marked stale.
bench-stale: $(STAMP)
	$(PY) benchmarks/check.py --skip-rerun --fix

docs: $(STAMP)
	$(PY) -m mkdocs build --strict

clean:
	rm -rf .venv runs site
