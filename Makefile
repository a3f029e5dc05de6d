# sitegate: `make run` starts the demo site, `make test` runs the tests, `make bench` the benchmarks.
# Each target sets up what it needs: the virtualenv at .venv, the signed development registry,
# and (for tests and benchmarks) Mosquitto and Chromium from Debian's packages when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SITE   ?= examples/demo/site.yaml
BENCH  ?=

.PHONY: run test bench venv registry system-packages clean help

help:
	@echo "make run     start the demo site (simulated devices, SQLite, WebSocket API and dashboard)"
	@echo "make test    run the test suite"
	@echo "make bench   run the benchmarks (make bench BENCH=<name> for one)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Build, sign (with the clearly marked DEVELOPMENT publisher key) and publish every
# integration in plugins/ into registry/, so the demo and tests load verified plugins.
registry: venv
	$(BIN)/python -m sitegate.registry.devpublish plugins registry

system-packages:
	@sh tests/system-packages.sh

run: venv registry
	$(BIN)/sitegate run $(SITE)

test: venv system-packages registry
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not soak"

bench: venv system-packages registry
	$(BIN)/python -m tests.bench $(BENCH)

clean:
	rm -rf $(VENV) .sitegate examples/*/.sitegate
