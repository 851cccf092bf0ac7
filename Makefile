# bilatcf: `make demo` trains CGN on the embedded synthetic data and draws its explanations; `make test` runs the CI suite.
# Both create the virtual environment (.venv, pip) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-all bench lint docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/bilatcf fit --config configs/demo.yaml
	$(BIN)/bilatcf explain --ckpt_path best --out runs/explain

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

bench: install
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/speed.py

lint: install
	$(BIN)/ruff format --check bilatcf tests benchmarks
	$(BIN)/ruff check bilatcf tests benchmarks

docs: install
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache site
