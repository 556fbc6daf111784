# `make run` and `make test` install whatever is missing first (images/install.sh is quick when nothing is).
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install run test lint bench clean

install:
	@images/install.sh

# Options go in RUN_ARGS, e.g. make run RUN_ARGS='--port 10002 --cdp-port 9232' (or AGENT_* variables).
run: install
	@$(VENV)/bin/browser-agent sandbox $(RUN_ARGS)

lint: install
	$(VENV)/bin/ruff check agent controlplane tests bench images harness
	$(VENV)/bin/ruff format --check agent controlplane tests bench images harness
	$(VENV)/bin/mypy

test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf .sandbox .pytest_cache .mypy_cache .ruff_cache

# The Dockerfile, proven without a Docker engine (root; see images/image-test.sh and docs/running.md).
.PHONY: image-test
image-test:
	@images/image-test.sh

# The soak (issue 13): mixed load on every route family, sampled every 30 s; not part of `make test`.
# SOAK_MINUTES (default 10), SOAK_CLIENTS (4), SOAK_SAMPLE_S (30).
.PHONY: soak
soak: install
	$(PY) -m bench.soak
