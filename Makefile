# Two commands do all set-up on a fresh Debian 12 machine:
#   make run   – the embedded default (SQLite, no Redis, demo data) on http://127.0.0.1:8000
#   make test  – installs what is missing (Python deps, redis-server, PostgreSQL, Chromium,
#                docker-compose) and runs the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := redis-server postgresql chromium docker-compose
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test venv system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian starts redis and PostgreSQL as services on install; the tests start their own.

run: $(STAMP)
	$(BIN)/reportcycles demo
	$(BIN)/reportcycles run

# Two processes, each taking whole files (each starts its own PostgreSQL, Redis and servers).
PYTEST_ARGS ?= -n 2 --dist loadfile

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: system-deps $(STAMP)
	BENCH_COMMAND="make bench" $(BIN)/python bench/run.py
	$(BIN)/python bench/throttle.py
	BENCH_COMMAND="make bench" $(BIN)/python bench/pages.py

clean:
	rm -rf $(VENV) instance *.egg-info
