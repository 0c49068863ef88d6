# vault-service: every task a developer or CI runs. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/dev.toml
PYTEST_ARGS ?=

.PHONY: help install proto proto-check run test lint bench clean system-deps

help:
	@echo "make run      set up and serve on 127.0.0.1:50051 (SQLite, filesystem blobs, local keyring)"
	@echo "make test     set up and run the whole test suite"
	@echo "make lint     ruff, mypy --strict, layering check, generated-code drift check"
	@echo "make proto    regenerate the gRPC code from protos/"
	@echo "make bench    run the benchmarks (results in bench-results/)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP)

# Generated code is committed (so the package imports without grpcio-tools) and regenerated here.
proto: $(STAMP)
	@PYTHON=$(PY) tools/gen_protos.sh

proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && PYTHON=$(PY) tools/gen_protos.sh $$tmp >/dev/null && \
	  diff -r -x __pycache__ $$tmp/vault_service/api vault_service/api && rm -rf $$tmp && \
	  echo "generated code matches protos/"

run: proto
	$(VENV)/bin/vaultctl --config $(CONFIG) keys init --if-missing
	$(VENV)/bin/vaultctl --config $(CONFIG) serve

# Debian packages the tests run for real (PostgreSQL, Chromium, Node.js): installed when missing.
system-deps:
	@tools/system_deps.sh

# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
test: proto system-deps
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; fi; exit $$rc

lint: proto-check
	$(VENV)/bin/ruff check vault_service tests tools benchmarks
	$(VENV)/bin/ruff format --check vault_service tests tools benchmarks
	$(VENV)/bin/mypy
	$(PY) tools/check_layering.py

bench: proto
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
