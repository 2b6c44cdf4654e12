# Each target sets itself up: a fresh clone needs nothing but python3 (≥3.10).
PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
OUT    ?= runs/quickstart

.PHONY: demo test lint bench device-check clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ppds quickstart --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check .

# pytest exits 5 when it collects no test; that is not a failure of the code.
test: lint
	$(BIN)/python -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The GPU check of the paper configurations (≤ 8 min on one modern GPU; JSON + Markdown report).
device-check: $(STAMP)
	$(BIN)/python benchmarks/device_check.py --out runs/device-check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
