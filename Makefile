# vault-service: every task a developer or CI runs. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= config/dev.toml
PYTEST_ARGS ?=

.PHONY: help install proto proto-check run test test-model lint bench soak clean system-deps bench-deps

help:
	@echo "make run      set up and serve on 127.0.0.1:50051 (SQLite, filesystem blobs, local keyring)"
	@echo "make test     set up and run the whole test suite"
	@echo "make test-model  the model-based lifecycle test alone, MODEL_EXAMPLES (5000) random examples"
	@echo "make lint     ruff, mypy --strict, layering check, generated-code drift check"
	@echo "make proto    regenerate the gRPC code from protos/"
	@echo "make bench    run the benchmarks (results in bench-results/); BENCH=module runs one"
	@echo "make soak     64 clients for SOAK_SECONDS (300): no INTERNAL, no lost write, flat memory"

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

# Debian packages the tests run for real (PostgreSQL, Chromium, Node.js, h2load): installed when
# missing; bench-deps: the benchmarks' (PostgreSQL, h2load).
system-deps:
	@tools/system_deps.sh

bench-deps:
	@tools/system_deps.sh bench

# The independent gRPC client of the interoperability test (tests/interop/node), from npm.
NODE_DEPS := tests/interop/node/node_modules/.package-lock.json
$(NODE_DEPS): tests/interop/node/package-lock.json | system-deps
	cd tests/interop/node && npm ci --no-audit --no-fund --loglevel=error

# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
test: proto system-deps $(NODE_DEPS)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; fi; exit $$rc

# The model-based lifecycle test (tests/model) alone and longer than in `make test`: MODEL_EXAMPLES
# examples on SQLite and a fifth of them on PostgreSQL (MODEL_PG_EXAMPLES), MODEL_STEPS steps each,
# random seeds (a failure prints the blob that reproduces it), with hypothesis statistics.
MODEL_EXAMPLES ?= 5000
test-model: proto system-deps
	MODEL_EXAMPLES=$(MODEL_EXAMPLES) MODEL_RANDOM=1 $(PY) -m pytest tests/model \
	  --hypothesis-show-statistics $(PYTEST_ARGS)

lint: proto-check
	$(VENV)/bin/ruff check vault_service tests tools benchmarks
	$(VENV)/bin/ruff format --check vault_service tests tools benchmarks
	$(VENV)/bin/mypy
	$(PY) tools/check_layering.py

# 64 concurrent clients mixing put, get, share and erase for SOAK_SECONDS (bench-results/soak.json)
SOAK_SECONDS ?= 300
soak: proto
	$(PY) tools/soak.py --clients 64 --seconds $(SOAK_SECONDS)

# BENCH: benchmark modules to run alone (e.g. BENCH=benchmarks.bench_breach_scope); default all
BENCH ?=
bench: proto bench-deps
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m benchmarks.run $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
