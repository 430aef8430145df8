# Purse: the two commands a developer needs.
#   make dev   - run the whole system locally (http://127.0.0.1:3000; PURSE_PORT overrides)
#   make test  - everything CI checks
SHELL := /bin/bash

.PHONY: dev test bench audit

dev:
	@bash tools/dev.sh

test:
	@bash tools/test.sh

# Cold-start and size of one release function binary (see docs/benchmarks.md).
bench:
	@bash tools/bench/run.sh
