# Two commands set everything up: `make test` and `make demo`. Both create .venv on first use and
# reinstall only when requirements*.txt change (the stamp file name carries their hash).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
DEMO_DATA ?= data/synthetic
DEMO_OUT ?= outputs/demo

.PHONY: venv lint test test-earth2studio demo data bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements into $(VENV) (first run takes a few minutes)..."
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.txt -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import torch, physicsnemo, netCDF4, zarr, hydra" \
		|| { echo "Installation into $(VENV) failed; see the pip output above."; exit 1; }
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: venv
	$(BIN)/ruff check .

# Test files run in parallel processes (one torch thread each), longest first (tests/conftest.py);
# TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Earth2Studio runs exported packages in its own venv; CI runs this after `make test`.
E2S_VENV := .venv-e2s
E2S_STAMP := $(E2S_VENV)/.installed-$(shell sha256sum requirements-earth2studio.txt | cut -c1-16)

$(E2S_STAMP): requirements-earth2studio.txt
	@test -x $(E2S_VENV)/bin/python || $(PYTHON) -m venv $(E2S_VENV)
	@echo "Installing Earth2Studio into $(E2S_VENV) (first run takes a few minutes)..."
	$(E2S_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements-earth2studio.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(E2S_VENV)/bin/python -c "from earth2studio.models.dx import CorrDiff" \
		|| { echo "Installation into $(E2S_VENV) failed; see the pip output above."; exit 1; }
	@rm -f $(E2S_VENV)/.installed-*
	@touch $@

test-earth2studio: venv $(E2S_STAMP)
	CORRDIFF_EARTH2STUDIO_PYTHON=$(abspath $(E2S_VENV))/bin/python \
		$(BIN)/python -m pytest tests/test_export_earth2studio.py

data: venv
	$(BIN)/python -m datasets.synthetic --out $(DEMO_DATA)

demo: venv
	$(BIN)/python demo.py --out $(DEMO_OUT) --data $(DEMO_DATA)
	$(BIN)/python -m datasets.preview conf/dataset/synthetic.yaml \
		data_path=$(DEMO_DATA)/valid.nc stats_path=$(DEMO_DATA)/stats.json \
		--out $(DEMO_OUT)/dataset_preview.png

bench: venv
	$(BIN)/python benchmarks/bench_datapipe.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_score.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_nonnegative.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache
