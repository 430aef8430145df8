#!/usr/bin/env bash
# `make bench`: cold start, binary sizes, DynamoDB requests and handler times; see
# docs/benchmarks.md. Reports figures, asserts none.
#
# Builds what it needs (release: the five measured functions; debug: the dev server), then on a
# private throw-away stack (tools/stack/with-stack.sh):
#   tools/bench/settlement.py  deposit creation + settlement: DynamoDB requests, handler times
#   tools/bench/coldstart.py   spawn -> first /runtime/invocation/next under a fake Runtime API
#   budgets::flows             every flow, one Lambda event at a time (tests/integration/budgets.rs,
#                              release): DynamoDB requests and capacity units, SQS requests, CPU
# and prints the summaries: tools/bench/summary.py (target/bench/summary.txt) and every flow
# beside its budget, tools/bench/flows.py (target/bench/flows.md); raw results in target/bench/*.json.
#
#   BENCH_RUNS      cold starts per binary (default 20)
#   BENCH_DEPOSITS  deposits settled per part of settlement.py (default 10)
#   BENCH_TIMEOUT   seconds allowed for the measurements after the builds (default 540)
#   BENCH_SKIP_BUILD=1  use the binaries already in target/
#   BENCH_NODELAY=0 leave Nagle on in the emulator and sandbox (see tools/bench/nodelay/)
#   BENCH_WEB=0     skip the web app's weight and Lighthouse run (tools/bench/web.sh)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/bench"
runs="${BENCH_RUNS:-20}"
deposits="${BENCH_DEPOSITS:-10}"
limit="${BENCH_TIMEOUT:-540}"

functions=(http_me_get http_auth_register webhook_revio http_deposits_create sqs_revio_events)

bash tools/stack/venv.sh
py="$root/.venv/bin/python"

if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  echo "bench: building release ${functions[*]} (a clean build takes several minutes)..." >&2
  args=()
  for f in "${functions[@]}"; do args+=(-p "$f"); done
  cargo build --release "${args[@]}"
  echo "bench: building the dev server (debug)..." >&2
  cargo build -p purse-devserver
  echo "bench: building the flow measurement (release test binary; several minutes from clean)..." >&2
  cargo test --release -p purse-tests --test integration --no-run
fi

mkdir -p "$out"
rm -f "$out/settlement.json" "$out/coldstart.json" "$out/flows.json"

measure=(tools/stack/with-stack.sh bash -c '
  set -euo pipefail
  "$0" tools/bench/settlement.py --deposits "$1" --json "$3/settlement.json"
  "$0" tools/bench/coldstart.py --runs "$2" --json "$3/coldstart.json"
  PURSE_BENCH_FLOWS="$3/flows.json" cargo test -q --release -p purse-tests --test integration -- \
    --ignored --exact budgets::flows --nocapture >"$3/flows.log" 2>&1 || { tail -40 "$3/flows.log" >&2; exit 1; }
' "$py" "$deposits" "$runs" "$out")

# The local servers answer with TCP_NODELAY during the benchmark: Python's http.server otherwise
# adds a ~40 ms delayed-ACK stall to every reused connection (tools/bench/nodelay/sitecustomize.py).
if [[ "${BENCH_NODELAY:-1}" != 0 ]]; then
  export PYTHONPATH="$root/tools/bench/nodelay${PYTHONPATH:+:$PYTHONPATH}"
fi

started=$SECONDS
if command -v timeout >/dev/null; then
  # TERM reaches with-stack.sh, whose trap stops the stack.
  timeout --signal=TERM "$limit" "${measure[@]}" || rc=$?
else
  "${measure[@]}" || rc=$?
fi
rc="${rc:-0}"
if (( rc == 124 )); then
  echo "bench: measurements took longer than ${limit}s and were stopped" >&2
fi
echo "bench: measurements took $((SECONDS - started))s" >&2

"$py" tools/bench/summary.py --dir "$out" --markdown "$out/summary.md"
if [[ -f "$out/flows.json" ]]; then
  echo
  "$py" tools/bench/flows.py --json "$out/flows.json" --markdown "$out/flows.md" --out "$out/flows.summary.json"
fi
if [[ "${BENCH_WEB:-1}" != 0 ]]; then
  echo
  bash tools/bench/web.sh || rc=$?
fi
exit "$rc"
