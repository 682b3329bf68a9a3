# The README's commands. Everything runs inside .venv, built from requirements-dev.txt (pinned) on first use.
VENV      ?= .venv
PY        := $(VENV)/bin/python
DEPS      := $(VENV)/.deps-installed
export PYO3_PYTHON := $(abspath $(PY))

.PHONY: demo test lint format build bench bench-quick clean

$(PY):
	python3 -m venv $(VENV)

$(DEPS): requirements-dev.txt | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Builds the Rust extension (release) into the virtual environment; cargo skips it when nothing changed.
build: $(DEPS)
	$(VENV)/bin/maturin develop --release --quiet >/dev/null 2>&1 || $(VENV)/bin/maturin develop --release

demo: build
	$(VENV)/bin/upmirror demo

test: build
	cargo test -p upmirror-core --quiet
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

lint: build
	cargo fmt --all --check
	cargo clippy --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest upmirror._native

format: $(DEPS)
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

bench: build
	$(PY) -m benches

bench-quick: build
	$(PY) -m benches --quick

clean:
	rm -rf $(VENV) target benches/results
