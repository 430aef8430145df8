#!/usr/bin/env python3
"""Cold start of release function binaries, run the way Lambda runs them.

For each binary: a fake Lambda Runtime API (benchlib.FakeRuntime) listens on 127.0.0.1; the
binary is spawned with Lambda's variables (AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME,
AWS_LAMBDA_FUNCTION_MEMORY_SIZE from template.yaml, ...) and the function's environment from
template.yaml resolved against a local stack provisioned in the emulator (prefix ``bench-``;
one short dev server run provisions it when it is missing). Cold start = spawn -> the first
``GET /2018-06-01/runtime/invocation/next``, i.e. process start, runtime set-up and the
function's init (configuration, AWS clients, secrets, Revio's public key). Then the process
is killed (SIGKILL) and its CPU time and peak RSS are read with wait4.

Init talks to the emulator / Revio sandbox where the function needs to (Secrets Manager for
the JWT keys and Revio credentials, Revio's public key): those round trips are part of the
figure. ``http_auth_register`` loads no secret, so its init makes no network call; the
``--offline-check`` run proves it by pointing AWS_ENDPOINT_URL at a closed port.

Run under tools/stack/with-stack.sh (tools/bench/run.sh does). Reports figures, asserts none.

Usage: coldstart.py [--runs 20] [--warmup 1] [--prefix bench-] [--json out.json] [BINARY ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

DEFAULT_BINARIES = ["http_auth_register", "http_me_get", "webhook_revio", "http_deposits_create", "sqs_revio_events"]
# What each binary fetches at init beyond configuration and SDK clients (functions/*/src/lib.rs);
# the AWS part is also counted by the emulator and reported as "aws_requests_per_init".
INIT_IO = {
    "http_auth_register": "nothing",
    "http_me_get": "JWT keys secret",
    "webhook_revio": "Revio secret, Revio public key",
    "http_deposits_create": "JWT keys secret, Revio secret",
    "sqs_revio_events": "Revio secret",
}
# A first request that needs no I/O, to show what the first invocation adds.
FIRST_EVENT = {"http_me_get": "events/http_me_get.no_token.json"}


def measure(runtime: b.FakeRuntime, binary: Path, env: dict[str, str], runs: int, warmup: int,
            log_path: Path, first_event: dict | None = None) -> dict:
    init_ms: list[float] = []
    cpu_ms: list[float] = []
    rss: list[float] = []
    first_ms: list[float] = []
    for i in range(warmup + runs):
        runtime.reset(events=[first_event] if first_event else [], gate=False)
        proc, t0 = b.spawn(binary, env, log_path)
        t_next = runtime.wait_next(1, proc, timeout=30)
        first = None
        if t_next is not None and first_event is not None:
            runtime.open_gate()
            if runtime.wait_responses(1, proc, timeout=10):
                first = runtime.invocations()[0]["ms"]
                # It asks for the next event at once; take that request now, or it could land
                # in the next run after the reset.
                runtime.wait_next(2, proc, timeout=5)
        usage = b.kill(proc)
        runtime.release()
        if t_next is None:
            tail = log_path.read_text(errors="replace")[-2000:]
            return {"error": f"no /next within 30 s (exit code {proc.returncode}); log tail:\n{tail}"}
        if i < warmup:
            continue
        init_ms.append((t_next - t0) * 1000)
        cpu_ms.append(usage.get("cpu_ms", 0.0))
        if "max_rss_mib" in usage:
            rss.append(usage["max_rss_mib"])
        if first is not None:
            first_ms.append(first)
    out = {"init_ms": b.summary(init_ms), "cpu_ms": b.summary(cpu_ms), "max_rss_mib": b.summary(rss),
           "samples_ms": [round(x, 2) for x in init_ms]}
    if first_ms:
        out["first_request_ms"] = b.summary(first_ms)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binaries", nargs="*", default=DEFAULT_BINARIES)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1, help="uncounted runs first (page cache, emulator warm)")
    ap.add_argument("--prefix", default=b.DEFAULT_PREFIX)
    ap.add_argument("--target-dir", default=str(b.ROOT / "target" / "release"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-offline-check", dest="offline", action="store_false")
    args = ap.parse_args(argv)

    b.aws_env()
    b.ensure_stack(args.prefix)
    stack = b.Stack(args.prefix)
    logs = b.ROOT / "target" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    runtime = b.FakeRuntime()
    emu = b.Emulator()
    results: dict[str, dict] = {}
    try:
        plan = [(name, name, {}) for name in args.binaries]
        if args.offline and "http_auth_register" in args.binaries:
            closed = b.free_port()  # nothing listens there
            offline = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}
            plan.append(("http_auth_register (emulator unreachable)", "http_auth_register", offline))
            # (No CA-store diagnostic: no client reads the system store since the shared TLS
            # set-up, shared/src/tls.rs; SSL_CERT_FILE has no effect.)
        for label, name, extra in plan:
            binary = Path(args.target_dir) / name
            if not binary.exists():
                results[label] = {"error": f"{binary} missing: cargo build --release -p {name}"}
                print(f"coldstart: {label}: {results[label]['error']}", file=sys.stderr)
                continue
            env = stack.lambda_env(name, runtime.address, extra)
            event = None
            if name in FIRST_EVENT and not extra:  # only on the plain runs
                event = json.loads((b.ROOT / FIRST_EVENT[name]).read_text())
            log_path = logs / f"coldstart-{name}.log"
            log_path.write_bytes(b"")
            started = time.monotonic()
            emu.reset()
            r = measure(runtime, binary, env, args.runs, args.warmup, log_path, event)
            spawned = args.runs + args.warmup
            r["aws_requests_per_init"] = {f"{svc}.{op}": round(n / spawned, 2)
                                          for svc, ops in emu.stats().items() if svc != "capacity"
                                          for op, n in sorted(ops.items())}
            r["init_io"] = INIT_IO.get(name, "?")
            r["binary"] = str(binary)
            results[label] = r
            if "error" in r:
                print(f"coldstart: {label}: {r['error']}", file=sys.stderr)
            else:
                s = r["init_ms"]
                print(f"coldstart: {label:45s} init min {s['min']:6.1f}  median {s['median']:6.1f}  "
                      f"p90 {s['p90']:6.1f} ms  (cpu median {r['cpu_ms']['median']:.1f} ms, "
                      f"rss {r['max_rss_mib'].get('median', 0):.1f} MiB; {r['aws_requests_per_init']}; "
                      f"{time.monotonic() - started:.1f}s)", file=sys.stderr)
    finally:
        runtime.close()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": args.runs, "warmup": args.warmup, "binaries": results}, indent=2))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
