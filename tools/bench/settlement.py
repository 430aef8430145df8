#!/usr/bin/env python3
"""DynamoDB requests and handler times of a deposit: creation and settlement.

Part 1, the whole system as ``make dev`` runs it (``target/debug/purse-devserver``, stack
prefix ``bench-``), driven over HTTP:
  * register + log in one user; create 2K deposits (``POST /v1/deposits``, 25.00 each, with an
    Idempotency-Key), counting the emulator's requests around them (per deposit creation);
  * reset the counters, pay the first K purchases one after another through the Revio
    sandbox's control API, each time waiting (by reading the dev server's log, never the API)
    until the consumer logged ``batch processed``; wait until the DynamoDB counters stop
    moving, read them (per settlement = webhook receiver + SQS consumer), and only then check
    every deposit is COMPLETED through ``GET /v1/transactions/<id>``;
  * handler times from the dev server's log: ``POST /webhooks/revio 200 12ms`` per webhook, and
    webhook answered -> ``batch processed`` per event (SQS hand-over + consumer). The dev server
    is a debug build.

Part 2, the two settlement functions as release binaries, each under the fake Lambda Runtime
API (benchlib.FakeRuntime), dev server stopped:
  * the remaining K purchases are paid with the sandbox's ``lose_webhooks`` fault on, so Revio's
    own deliveries are dropped; their signed webhook bodies (signed by the sandbox) are fed to
    ``webhook_revio`` as Function URL events (events/webhook_revio.json), one per invocation;
  * the messages it queued are read from SQS and fed to ``sqs_revio_events``, one per batch;
  * per function: DynamoDB/SQS requests per event (counters reset after init) and handler time
    per invocation (event handed out on /next -> response posted), first invocation apart;
  * the settled items are read back: TXN COMPLETED, and the sizes of the three items the
    settlement transaction writes (write units: 2 per item up to 1 KB in a transaction).

Run under tools/stack/with-stack.sh after building the dev server (debug) and the release
functions (tools/bench/run.sh does both). Reports figures, asserts none.

Usage: settlement.py [--deposits 10] [--prefix bench-] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402

AMOUNT = "25.00"
GATEWAY_LINE = re.compile(r"^(\S+)\s+INFO\s+(?:.*?: )?(GET|POST|PUT|DELETE|PATCH) (\S+) (\d{3}) (\d+)ms\s*$")
BATCH_LINE = re.compile(r"^(\S+)\s+INFO\s+.*batch processed.*received=(\d+).*failed=(\d+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def per(counts: dict[str, int], k: int) -> dict[str, float]:
    return {op: round(n / k, 3) for op, n in sorted(counts.items())}


def ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def clean(lines: list[str]) -> list[str]:
    return [ANSI.sub("", line) for line in lines]


def die(msg: str) -> None:
    raise SystemExit(f"settlement: {msg}")


# --------------------------------------------------------------------------- part 1
def part1(k: int, k2: int, prefix: str) -> tuple[dict, list[dict], str]:
    emu = b.Emulator()
    revio = os.environ["PURSE_REVIO_URL"].rstrip("/")
    dev = b.DevServer(prefix)
    dev.start()
    started = time.monotonic()
    try:
        base = dev.base_url
        email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
        password = "correct-horse-battery-staple"
        st, body, _ = b.http("POST", f"{base}/v1/auth/register", {"email": email, "password": password})
        if st != 201:
            die(f"register: {st} {body}")
        st, body, _ = b.http("POST", f"{base}/v1/auth/login", {"email": email, "password": password})
        if st != 200:
            die(f"login: {st} {body}")
        auth = {"authorization": f"Bearer {body['access_token']}"}

        # --- deposit creation
        emu.wait_quiet("dynamodb", quiet_s=0.3)
        emu.reset()
        deposits = []
        for _ in range(k + k2):
            st, body, _ = b.http("POST", f"{base}/v1/deposits", {"amount": AMOUNT},
                                 {**auth, "idempotency-key": f"bench-{uuid.uuid4()}"})
            if st != 201:
                die(f"POST /v1/deposits: {st} {body}")
            deposits.append({"id": body["id"], "purchase": body["reference"]})
        created = emu.wait_quiet("dynamodb", quiet_s=0.3)
        n = len(deposits)
        create = {
            "deposits": n,
            "dynamodb_per_deposit": per(created.get("dynamodb", {}), n),
            "dynamodb_requests_per_deposit": round(sum(created.get("dynamodb", {}).values()) / n, 3),
            "secretsmanager_per_deposit": per(created.get("secretsmanager", {}), n),
        }
        create_ms = [int(m.group(5)) for m in map(GATEWAY_LINE.match, clean(dev.log_lines()))
                     if m and m.group(2) == "POST" and m.group(3) == "/v1/deposits"]
        create["devserver_handler_ms"] = b.summary([float(x) for x in create_ms])

        # --- settlement through the whole system
        mark = len(dev.log_lines())
        emu.wait_quiet("dynamodb", quiet_s=0.3)
        emu.reset()
        for d in deposits[:k]:
            before = sum(int(m.group(2)) for m in map(BATCH_LINE.match, clean(dev.log_lines()[mark:])) if m)
            st, body, _ = b.http("POST", f"{revio}/_sandbox/purchases/{d['purchase']}/pay")
            if st != 200:
                die(f"sandbox pay: {st} {body}")
            deadline = time.monotonic() + 30
            while True:
                done = sum(int(m.group(2)) for m in map(BATCH_LINE.match, clean(dev.log_lines()[mark:])) if m)
                if done > before:
                    break
                if time.monotonic() > deadline:
                    die(f"no 'batch processed' within 30 s after paying {d['purchase']}; see {dev.log_path}")
                time.sleep(0.01)
        settled = emu.wait_quiet("dynamodb", quiet_s=1.0)
        lines = clean(dev.log_lines()[mark:])
        # only now ask the API (its reads are not counted)
        statuses = []
        for d in deposits[:k]:
            st, body, _ = b.http("GET", f"{base}/v1/transactions/{d['id']}", headers=auth)
            statuses.append(body.get("status") if isinstance(body, dict) else f"HTTP {st}")
        hooks = [m for m in map(GATEWAY_LINE.match, lines) if m and m.group(3) == "/webhooks/revio"]
        batches = [m for m in map(BATCH_LINE.match, lines) if m]
        handover = []
        for hook in hooks:
            t = ts(hook.group(1))
            after = [ts(m.group(1)) for m in batches if ts(m.group(1)) >= t]
            if after:
                handover.append((after[0] - t) * 1000)
        ddb = settled.get("dynamodb", {})
        scheduled = any("scheduled run" in line for line in lines)
        settle = {
            "settlements": k,
            "statuses": {s: statuses.count(s) for s in set(statuses)},
            "dynamodb_per_settlement": per(ddb, k),
            "dynamodb_requests_per_settlement": round(sum(ddb.values()) / k, 3),
            "transact_write_items_per_settlement": round(ddb.get("TransactWriteItems", 0) / k, 3),
            "sqs_per_settlement_excluding_receive": per({o: c for o, c in settled.get("sqs", {}).items()
                                                         if o not in ("ReceiveMessage",)}, k),
            "secretsmanager_per_settlement": per(settled.get("secretsmanager", {}), k),
            "webhook_statuses": sorted({m.group(4) for m in hooks}),
            "webhooks_seen": len(hooks),
            "messages_failed": sum(int(m.group(3)) for m in batches),
            "devserver_webhook_handler_ms": b.summary([float(m.group(5)) for m in hooks]),
            "devserver_webhook_answered_to_batch_processed_ms": b.summary(handover),
            "reconcile_ran_during_measurement": scheduled,
            "elapsed_since_devserver_start_s": round(time.monotonic() - started, 1),
        }
        return {"create": create, "settle": settle}, deposits[k:], dev.base_url
    finally:
        dev.stop()


# --------------------------------------------------------------------------- part 2
def run_function(stack: b.Stack, name: str, events: list[dict], extra_env: dict[str, str] | None = None) -> dict:
    """Spawns release ``name`` under the fake runtime, lets init finish, resets the counters,
    then hands out ``events`` one per invocation; returns times, counters and responses."""
    emu = b.Emulator()
    binary = Path(os.environ.get("BENCH_RELEASE_DIR") or b.ROOT / "target" / "release") / name
    if not binary.exists():
        die(f"{binary} missing: cargo build --release -p {name}")
    runtime = b.FakeRuntime()
    log_path = b.ROOT / "target" / "bench" / f"invoke-{name}.log"
    log_path.write_bytes(b"")
    try:
        runtime.reset(events=events[:1], gate=False)
        env = stack.lambda_env(name, runtime.address, extra_env)
        proc, t0 = b.spawn(binary, env, log_path)
        t_next = runtime.wait_next(1, proc, timeout=30)
        if t_next is None:
            b.kill(proc)
            die(f"{name} did not reach /next; log tail:\n{log_path.read_text(errors='replace')[-2000:]}")
        emu.wait_quiet("dynamodb", quiet_s=0.2, timeout_s=5)
        emu.reset()
        cpu = [b.cpu_ns(proc.pid)]
        runtime.open_gate()
        ok = runtime.wait_responses(1, proc, timeout=60)
        cpu.append(b.cpu_ns(proc.pid))
        runtime.push(events[1:])
        ok = ok and runtime.wait_responses(len(events), proc, timeout=60)
        cpu.append(b.cpu_ns(proc.pid))
        stats = emu.stats()
        usage = b.kill(proc)
        if not ok:
            die(f"{name}: only {len(runtime.responses)} of {len(events)} responses; see {log_path}")
        inv = runtime.invocations()
    finally:
        runtime.close()
    n = len(events)
    times = [i["ms"] for i in inv]
    return {
        "events": n,
        "init_ms": round((t_next - t0) * 1000, 2),
        "first_invocation_ms": round(times[0], 2),
        "first_invocation_cpu_ms": round((cpu[1] - cpu[0]) / 1e6, 2) if None not in cpu else None,
        "warm_cpu_ms_per_event": round((cpu[2] - cpu[1]) / 1e6 / (n - 1), 2) if None not in cpu and n > 1 else None,
        "warm_invocation_ms": b.summary(times[1:]),
        "samples_ms": [round(t, 1) for t in times],
        "dynamodb_per_event": per(stats.get("dynamodb", {}), n),
        "dynamodb_requests_per_event": round(sum(stats.get("dynamodb", {}).values()) / n, 3),
        "sqs_per_event": per(stats.get("sqs", {}), n),
        "secretsmanager_per_event": per(stats.get("secretsmanager", {}), n),
        "process": usage,
        "responses": [json.loads(i["body"] or b"null") for i in inv],
        "errors": [i for i in inv if i["kind"] != "response"],
    }


def probe_emulator(table: str, txn_id: str, rounds: int = 20) -> dict:
    """Round-trip time of single DynamoDB operations against the emulator, from boto3 (about a
    millisecond of it is boto3 itself), on the bench table as it is now: how much of a
    handler's time the emulator accounts for. Scratch items only (pk BENCHPROBE#...)."""
    ddb = b.boto("dynamodb")
    count = ddb.scan(TableName=table, Select="COUNT")["Count"]
    key = {"pk": {"S": f"TXN#{txn_id}"}, "sk": {"S": "TXN"}}

    def upd(i: int) -> dict:
        return {"TableName": table, "Key": {"pk": {"S": f"BENCHPROBE#{i}"}, "sk": {"S": "P"}},
                "UpdateExpression": "SET n = if_not_exists(n, :z) + :one",
                "ExpressionAttributeValues": {":z": {"N": "0"}, ":one": {"N": "1"}}}

    calls = {
        "GetItem": lambda: ddb.get_item(TableName=table, Key=key),
        "UpdateItem": lambda: ddb.update_item(**upd(0)),
        "TransactWriteItems (3 updates)": lambda: ddb.transact_write_items(
            TransactItems=[{"Update": upd(i)} for i in (1, 2, 3)]),
        "HTTP baseline (GET /_emulator/stats)": lambda: b.Emulator().stats(),
    }
    out: dict = {"table_items": count}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1000)
        out[name] = round(b.summary(times)["median"], 2)
    for i in range(4):
        ddb.delete_item(TableName=table, Key={"pk": {"S": f"BENCHPROBE#{i}"}, "sk": {"S": "P"}})
    return out


def part2(pending: list[dict], prefix: str, api_base: str) -> dict:
    revio = os.environ["PURSE_REVIO_URL"].rstrip("/")
    stack = b.Stack(prefix, api_base)
    k = len(pending)

    # Pay with Revio's own deliveries dropped: we deliver the signed bodies ourselves.
    b.http("POST", f"{revio}/_sandbox/faults", {"lose_webhooks": k})
    bodies = []
    for d in pending:
        st, purchase, _ = b.http("POST", f"{revio}/_sandbox/purchases/{d['purchase']}/pay")
        if st != 200:
            die(f"sandbox pay: {st} {purchase}")
        # exactly what the sandbox signs and sends (tools/sandbox/revio.py webhook_body)
        bodies.append(json.dumps({**purchase, "event_type": "purchase.paid"}, separators=(",", ":")).encode())
    b.http("POST", f"{revio}/_sandbox/faults", {"lose_webhooks": 0})

    template = json.loads((b.ROOT / "events" / "webhook_revio.json").read_text())
    events = []
    for body in bodies:
        st, sig, _ = b.http("POST", f"{revio}/_sandbox/sign", body, {"content-type": "application/octet-stream"})
        if st != 200:
            die(f"sandbox sign: {st} {sig}")
        ev = json.loads(json.dumps(template))
        ev["headers"]["x-signature"] = sig["signature"]
        ev["headers"]["content-length"] = str(len(body))
        ev["body"] = body.decode()
        ev["requestContext"]["requestId"] = str(uuid.uuid4())
        ev["requestContext"]["timeEpoch"] = int(time.time() * 1000)
        events.append(ev)
    # A queue of its own: the stopped dev server's last long poll may still be waiting inside
    # the emulator on the stack's queue and would swallow a message.
    sqs = b.boto("sqs")
    queue_url = sqs.create_queue(QueueName=f"{prefix}part2-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    receiver = run_function(stack, "webhook_revio", events, {"REVIO_EVENTS_QUEUE_URL": queue_url})
    statuses = [r.get("statusCode") if isinstance(r, dict) else None for r in receiver.pop("responses")]
    receiver["status_codes"] = {str(s): statuses.count(s) for s in set(statuses)}

    # What the receiver queued, as Lambda's SQS event source would hand it over (batch of 1).
    messages: list[dict] = []
    deadline = time.monotonic() + 20
    while len(messages) < k and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  VisibilityTimeout=600, AttributeNames=["All"]).get("Messages", [])
        messages.extend(got)
    if len(messages) < k:
        die(f"only {len(messages)} of {k} queued events found in {queue_url}")
    region = os.environ.get("AWS_REGION", "us-east-1")
    records = [{"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region}]} for m in messages]
    consumer = run_function(stack, "sqs_revio_events", records)
    failures = [r for r in consumer.pop("responses") if not isinstance(r, dict) or r.get("batchItemFailures")]
    consumer["batches_with_failures"] = len(failures)
    sqs.delete_queue(QueueUrl=queue_url)

    # Read back what settlement wrote: status and the three items of the transaction.
    ddb = b.boto("dynamodb")
    table = stack.physical("PurseTable")[0]
    statuses, sizes = [], {"transaction": [], "debit_account": [], "credit_account": []}
    same_write = None
    for d in pending:
        item = ddb.get_item(TableName=table, Key={"pk": {"S": f"TXN#{d['id']}"}, "sk": {"S": "TXN"}})["Item"]
        statuses.append(item["status"]["S"])
        sizes["transaction"].append(b.item_size(item))
        for side in ("debit", "credit"):
            acc = ddb.get_item(TableName=table, Key={"pk": {"S": f"ACCOUNT#{item[side + '_account']['S']}"},
                                                     "sk": {"S": "ACCOUNT"}})["Item"]
            sizes[f"{side}_account"].append(b.item_size(acc))
        if d is pending[-1] and "completed_at" in item:
            # The last settlement's three items carry one timestamp: one transaction wrote them.
            debit = ddb.get_item(TableName=table, Key={"pk": {"S": f"ACCOUNT#{item['debit_account']['S']}"},
                                                       "sk": {"S": "ACCOUNT"}})["Item"]
            credit = ddb.get_item(TableName=table, Key={"pk": {"S": f"ACCOUNT#{item['credit_account']['S']}"},
                                                        "sk": {"S": "ACCOUNT"}})["Item"]
            same_write = (item["completed_at"]["S"] == debit["updated_at"]["S"] == credit["updated_at"]["S"])
    # Largest item of each kind (pk prefix) in the table now, for write units (1 per KB).
    by_kind: dict[str, int] = {}
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            kind = item["pk"]["S"].split("#", 1)[0]
            by_kind[kind] = max(by_kind.get(kind, 0), b.item_size(item))
    return {
        "item_bytes_max_by_kind": dict(sorted(by_kind.items())),
        "emulator_latency_ms": probe_emulator(table, pending[-1]["id"]),
        "webhook_revio": receiver,
        "sqs_revio_events": consumer,
        "statuses": {s: statuses.count(s) for s in set(statuses)},
        "item_bytes_max": {kind: max(v) for kind, v in sizes.items()},
        "last_settlement_items_share_one_timestamp": same_write,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deposits", type=int, default=10, help="K: settled per part")
    ap.add_argument("--prefix", default=b.DEFAULT_PREFIX)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    b.aws_env()
    (b.ROOT / "target" / "bench").mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    p1, pending, api_base = part1(args.deposits, args.deposits, args.prefix)
    print(f"settlement: part 1 (dev server) done in {time.monotonic() - t:.1f}s", file=sys.stderr)
    t = time.monotonic()
    p2 = part2(pending, args.prefix, api_base)
    print(f"settlement: part 2 (release binaries) done in {time.monotonic() - t:.1f}s", file=sys.stderr)
    out = {"amount": AMOUNT, "devserver": p1, "release": p2}
    text = json.dumps(out, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
