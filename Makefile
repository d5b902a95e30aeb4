# One entry point for people and CI. `make run` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SIMULATE ?= 3
SYSTEM_PACKAGES := mosquitto mosquitto-clients influxdb

.PHONY: run test test-fast lint typecheck bench system-deps install clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

## Start the service on the embedded default with simulated wearables (Ctrl-C stops it).
run: install
	$(BIN)/crampwatch serve --simulate $(SIMULATE)

## Install what the tests need (apt packages when root), then run lint, types and the whole suite.
test: system-deps install lint typecheck
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not integration and not slow"

system-deps:
	@missing=""; for b in mosquitto influxd mosquitto_passwd; do \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="yes"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing $(SYSTEM_PACKAGES) with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing mosquitto/influxd: run 'sudo apt-get install -y $(SYSTEM_PACKAGES)'" >&2; exit 1; \
	  fi; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

## Benchmarks (not part of `make test`); tables on stdout, JSON in bench/results/.
bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache crampwatch-data
