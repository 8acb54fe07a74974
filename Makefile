# The README's two commands: `make demo` and `make test`. Both install what they need first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	bash tools/install.sh $(BIN)/python

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m clsp.train recipe=demo

test: install
	$(BIN)/ruff check clsp tests tools
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2 tests

lint: install
	$(BIN)/ruff check clsp tests tools

bench: install
	$(BIN)/python tools/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info
