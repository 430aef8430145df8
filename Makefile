# Purse: the two commands a developer needs.
#   make dev   - run the whole system locally (http://127.0.0.1:3000; PURSE_PORT overrides)
#   make test  - everything CI checks
SHELL := /bin/bash

.PHONY: dev test bench admin chaos package

dev:
	@bash tools/dev.sh

test:
	@bash tools/test.sh

# The chaos suite on a random seed (make test runs it on fixed seeds); the seed is printed so a
# failure can be replayed with PURSE_CHAOS_SEED=<seed> make chaos.
chaos:
	@seed=$${PURSE_CHAOS_SEED:-$$(( RANDOM * 32768 + RANDOM ))}; echo "chaos seed: $$seed (replay: PURSE_CHAOS_SEED=$$seed make chaos)"; \
	 PURSE_CHAOS_SEED=$$seed bash tools/stack/with-stack.sh cargo test -p purse-tests --test integration chaos -- --nocapture

# Cold start, binary size and DynamoDB cost per deposit settlement (see docs/benchmarks.md).
bench:
	@bash tools/bench/run.sh

# sam build of every function for arm64 (cargo-lambda), each bootstrap zipped as sam deploy uploads
# it, and a table of sizes; fails if a stripped binary is over 6 MB (docs/deploy.md, "make package").
package:
	@bash tools/package/package.sh

# Operator commands against the `make dev` stack, e.g. make admin ARGS="grant-admin ada@example.com"
admin:
	@PURSE_TABLE=purse-dev-PurseTable REVIO_BASE_URL=http://127.0.0.1:$${PURSE_REVIO_PORT:-4580} REVIO_ALLOW_INSECURE_HTTP=true \
	 REVIO_SECRET_ID=purse-dev-RevioApiSecret \
	 AWS_ENDPOINT_URL=http://127.0.0.1:$${PURSE_EMULATOR_PORT:-4566} AWS_REGION=us-east-1 \
	 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
	 cargo run -q -p purse-admin -- $(ARGS)
