# fzoo: two commands. `make demo` runs the laundering study (`fzoo demo`), `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fzoo-installed
# torch pins for these Linux x86-64 machines (wheels on local disk); override TORCH_PINS elsewhere.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/fzoo demo --out demo-out

lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --check --no-cache .
	$(VENV)/bin/mypy -p fzoo

test: lint
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
