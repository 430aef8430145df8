#!/usr/bin/env python3
"""Local AWS emulator for Purse: moto's server app behind a tiny WSGI middleware.

Serves DynamoDB, SQS (JSON protocol, as the current AWS SDKs speak it; the
query protocol works too) and Secrets Manager -- in fact every service moto
knows -- on one port, like ``moto_server``. Clients use any dummy credentials,
region us-east-1 and ``AWS_ENDPOINT_URL=http://127.0.0.1:<port>``.

What the middleware adds on top of moto (5.2.5):

* One global lock around every request whose ``X-Amz-Target`` header starts
  with ``DynamoDB_``. moto restores a whole table from a copy when a
  TransactWriteItems is cancelled, losing writes made concurrently by other
  requests; serialising DynamoDB avoids that. SQS (long polls included) and
  Secrets Manager stay concurrent.
* Request counters for benchmarks, answered by the middleware itself (never
  reaching moto):
    GET  /_emulator/stats        -> {"dynamodb": {"TransactWriteItems": n, ...},
                                     "sqs": {...}, "secretsmanager": {...}}
    POST /_emulator/stats/reset  -> {"reset": true}   (zeroes the counters)
  Operation names are the part of ``X-Amz-Target`` after the dot.
* TransactWriteItems ``ClientRequestToken`` idempotency, which moto 5.2.5 does
  not implement (it ignores the token). Like real DynamoDB, for 10 minutes
  after a call with a token SUCCEEDED (2xx from moto):
    - the same token with the same request  -> the stored success answer is
      returned again and moto is not called (nothing is applied twice);
    - the same token with a different request -> HTTP 400
      ``IdempotentParameterMismatchException``.
  "Same request" compares the JSON body canonically (parsed, keys sorted, then
  sha256), so a client that rebuilds the request with another map order still
  matches. Failed calls (4xx/5xx from moto, or an injected conflict, throttle or
  internal fault) are not stored: a retry with the same token runs again. A call
  hit by ``lost_response`` (below) DID succeed and is stored. Entries older than
  10 minutes are dropped; ``POST /moto-api/reset`` also forgets all tokens.
* Fault injection (off unless configured), answering exactly as AWS does, so
  that retry paths can be tested against the real SDK. See "Faults" below.
* UpdateExpression arithmetic as strict as DynamoDB's. DynamoDB allows at most
  one ``+`` or ``-`` per SET value (``value ::= operand | operand '+' operand |
  operand '-' operand``); moto 5.2.5 evaluates chains like ``SET a = a - :x + :y``.
  An UpdateItem whose SET clause has a value with a second ``+``/``-`` outside
  parentheses, or a TransactWriteItems with any such ``Update`` (the whole call:
  no cancellation, nothing applied), gets DynamoDB's answer: HTTP 400
  ``com.amazonaws.dynamodb.v20120810#ValidationException`` with the message
  ``Invalid UpdateExpression: Syntax error; token: "+", near: ":x + :y"`` (the
  second operator, and the text from the token before it to the token after it).
  This is checked before anything else (no fault drawn, not counted in a scope's
  ``requests``, no token stored) and moto is not called.
* Quiet: no per-request log lines unless ``--verbose``.

moto's own control API is still reachable, e.g. ``POST /moto-api/reset``
wipes all emulated state.

Faults
------
A fault spec is a comma-separated list of ``key=value``::

    conflict=0.15,throttle=0.05,internal=0.02,lost_response=0.02,seed=7

Each fault kind is a probability in [0, 1] (missing kinds are 0; their sum must
be <= 1); ``seed`` is an integer (missing: a random seed, shown in the answers
so a run can be replayed). Unknown keys, repeated keys and bad values are an
error. ``""`` or ``off`` means no faults.

Kinds, and what the client sees (AWS JSON 1.0 errors: ``Content-Type:
application/x-amz-json-1.0``, ``x-amzn-ErrorType``, ``x-amzn-RequestId``, and
for DynamoDB ``x-amz-crc32``):

  conflict       TransactWriteItems only (other operations: no fault). HTTP 400
                 {"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                  "Message": "Transaction cancelled, please refer cancellation reasons
                              for specific reasons [None, TransactionConflict]",
                  "CancellationReasons": [{"Code": "None"},
                      {"Code": "TransactionConflict",
                       "Message": "Transaction is ongoing for the item"}]}
                 one reason per TransactItems entry, one of them (chosen by the
                 scope's random draw) TransactionConflict. Nothing is applied.
  throttle       DynamoDB only. HTTP 400, either (chosen by the draw)
                 {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                  "message": "Rate of requests exceeds the allowed throughput."} or
                 {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                  "message": "The level of configured provisioned throughput for the
                              table was exceeded. ..."}. Nothing is applied.
  internal       HTTP 500. DynamoDB:
                 {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                  "message": "Internal server error"}
                 SQS (like moto's own SQS JSON errors, with both message keys and
                 ``x-amzn-query-error: InternalError;Receiver``):
                 {"__type": "com.amazonaws.sqs#InternalError",
                  "message": "We encountered an internal error. Please try again.",
                  "Message": "We encountered an internal error. Please try again."}
                 Nothing is applied.
  lost_response  The request is processed normally and completely (moto applies
                 it; for DynamoDB under the lock, token cache included), then
                 its answer is thrown away and the client gets the same HTTP 500
                 as ``internal``. The client cannot tell that it succeeded.

Only data-plane operations are eligible, so provisioning is never faulted:
  DynamoDB: GetItem PutItem UpdateItem DeleteItem Query Scan BatchGetItem
            BatchWriteItem TransactWriteItems TransactGetItems
  SQS (JSON protocol, ``X-Amz-Target: AmazonSQS.*``): SendMessage
            SendMessageBatch DeleteMessage DeleteMessageBatch; only ``internal``
            and ``lost_response`` apply (a drawn conflict/throttle is no fault).
Everything else (CreateTable, DescribeTable, UpdateTimeToLive, CreateQueue,
GetQueueUrl, Get/SetQueueAttributes, ListQueues, ReceiveMessage, Secrets
Manager, SQS query protocol, ...) passes untouched.

Scopes. Fault configs are kept per scope. A request belongs to scope S when S is
non-empty and the raw request body (decoded) contains S as a substring -- give
each test its own table/queue name prefix and use it as its scope (DynamoDB
bodies carry ``TableName``, SQS bodies ``QueueUrl``). When several scopes match,
the longest wins. Requests matching no non-empty scope belong to the global
scope ``""``. A scope exists from its first POST until DELETE; a scope set to
``off`` stays, fault-free, and overrides global faults for its requests.

Determinism. Each scope has its own ``random.Random(seed)``, (re)created by
every POST of a spec. Exactly one number r is drawn per eligible request of a
configured scope; the kind is picked by cumulative probability in the order
conflict, throttle, internal, lost_response (r < p_conflict -> conflict, ...).
The position of r inside the chosen kind's band picks the cancelled item /
the throttling exception, so no further draws are made. The same seed and the
same sequence of requests in a scope give the same faults.

Control API (answered by the middleware, JSON):
  POST   /_emulator/faults   {"spec": "<spec>" | "" | "off", "scope"?: "<prefix>"}
         sets (or clears) the scope's faults (scope default "" = global); the
         scope's counters are kept. Answers {"scope": s, "config": {"conflict": p,
         "throttle": p, "internal": p, "lost_response": p, "seed": n} | null}.
         A bad spec or body -> 400 {"error": "<reason>"}.
  GET    /_emulator/faults   {"scopes": {"<scope>": <scope object>, ...}}
  GET    /_emulator/faults?scope=<prefix>   just that scope object (an unknown
         scope answers zeros and "config": null, never 404)
  DELETE /_emulator/faults?scope=<prefix>   forgets the scope, counters included
         (without ``scope``: the global scope). Answers {"scope": s, "deleted": bool}.
  A scope object is {"config": {...} | null,
      "injected": {"conflict": n, "throttle": n, "internal": n, "lost_response": n},
      "by_operation": {"TransactWriteItems": {"conflict": n, ...}, ...},
      "requests": n,        (eligible requests seen in the scope)
      "token_replays": n}   (TransactWriteItems answered from the token cache)

``PURSE_EMULATOR_FAULTS=<spec>`` in the environment sets the global scope at
start (a bad spec stops the emulator with an error); one line is logged.

Usage: emulator.py [--host 127.0.0.1] [--port $PURSE_EMULATOR_PORT|4566] [--verbose]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from collections import defaultdict
from typing import Any, Callable, Iterable

# moto reads this for URLs it builds for itself; set before importing it.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

STATS_PATH = "/_emulator/stats"
RESET_PATH = "/_emulator/stats/reset"
FAULTS_PATH = "/_emulator/faults"
MOTO_RESET_PATH = "/moto-api/reset"
FAULTS_ENV = "PURSE_EMULATOR_FAULTS"

# X-Amz-Target prefix -> service key in the stats answer
TARGET_SERVICES = (
    ("DynamoDB_", "dynamodb"),
    ("DynamoDBStreams_", "dynamodbstreams"),
    ("AmazonSQS.", "sqs"),
    ("secretsmanager.", "secretsmanager"),
)

FAULT_KINDS = ("conflict", "throttle", "internal", "lost_response")
ELIGIBLE_OPS = {
    "dynamodb": frozenset({
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan",
        "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",
    }),
    "sqs": frozenset({"SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch"}),
}
TOKEN_TTL_S = 600.0  # DynamoDB's ClientRequestToken idempotency window

DDB_PREFIX = "com.amazonaws.dynamodb.v20120810#"
AMZ_JSON = "application/x-amz-json-1.0"
THROTTLING_MESSAGE = "Rate of requests exceeds the allowed throughput."
PROVISIONED_MESSAGE = ("The level of configured provisioned throughput for the table was exceeded. "
                       "Consider increasing your provisioning level with the UpdateTable API.")
SQS_INTERNAL_MESSAGE = "We encountered an internal error. Please try again."

Response = tuple[str, list[tuple[str, str]], bytes]  # WSGI status, headers, body


# -- fault specs ------------------------------------------------------------
class FaultSpecError(ValueError):
    pass


def parse_fault_spec(spec: str) -> dict[str, Any] | None:
    """``conflict=0.1,...,seed=7`` -> config dict; ``""`` / ``off`` -> None."""
    if not isinstance(spec, str):
        raise FaultSpecError("spec must be a string")
    text = spec.strip()
    if text == "" or text.lower() == "off":
        return None
    config: dict[str, Any] = {k: 0.0 for k in FAULT_KINDS}
    seed: int | None = None
    seen: set[str] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise FaultSpecError(f"empty entry in fault spec {spec!r}")
        key, eq, value = (x.strip() for x in part.partition("="))
        if not eq or not key or not value:
            raise FaultSpecError(f"expected key=value in fault spec, got {part!r}")
        if key in seen:
            raise FaultSpecError(f"{key!r} given twice in fault spec")
        seen.add(key)
        if key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise FaultSpecError(f"seed must be an integer, got {value!r}") from None
        elif key in FAULT_KINDS:
            try:
                p = float(value)
            except ValueError:
                raise FaultSpecError(f"{key} must be a probability in [0, 1], got {value!r}") from None
            if not math.isfinite(p) or not 0.0 <= p <= 1.0:
                raise FaultSpecError(f"{key} must be a probability in [0, 1], got {value!r}")
            config[key] = p
        else:
            raise FaultSpecError(
                f"unknown fault {key!r} (known: {', '.join(FAULT_KINDS)}, seed)")
    total = sum(config[k] for k in FAULT_KINDS)
    if total > 1.0 + 1e-9:
        raise FaultSpecError(f"fault probabilities add up to {total:g} > 1")
    config["seed"] = seed if seed is not None else random.SystemRandom().randrange(2**31)
    return config


def format_fault_spec(config: dict[str, Any] | None) -> str:
    if config is None:
        return "off"
    parts = [f"{k}={config[k]:g}" for k in FAULT_KINDS if config[k]]
    return ",".join(parts + [f"seed={config['seed']}"])


def fault_applies(kind: str, service: str, op: str) -> bool:
    if kind == "conflict":
        return service == "dynamodb" and op == "TransactWriteItems"
    if kind == "throttle":
        return service == "dynamodb"
    return True  # internal, lost_response


class FaultScope:
    """Config, random sequence and counters of one scope (guarded by the caller's lock)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.rng: random.Random | None = None
        self.injected = {k: 0 for k in FAULT_KINDS}
        self.by_operation: dict[str, dict[str, int]] = defaultdict(
            lambda: {k: 0 for k in FAULT_KINDS})
        self.requests = 0
        self.token_replays = 0

    def configure(self, config: dict[str, Any] | None) -> None:
        self.config = config
        self.rng = random.Random(config["seed"]) if config else None

    def decide(self, service: str, op: str) -> tuple[str | None, float]:
        """One eligible request: (fault kind or None, position in the kind's band)."""
        self.requests += 1
        if self.config is None or self.rng is None:
            return None, 0.0
        r = self.rng.random()  # exactly one draw per eligible request
        low = 0.0
        for kind in FAULT_KINDS:
            p = self.config[kind]
            if p > 0.0 and r < low + p:
                if not fault_applies(kind, service, op):
                    return None, 0.0
                self.injected[kind] += 1
                self.by_operation[op][kind] += 1
                return kind, min(max((r - low) / p, 0.0), 1.0 - 1e-12)
            low += p
        return None, 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "config": dict(self.config) if self.config else None,
            "injected": dict(self.injected),
            "by_operation": {op: dict(c) for op, c in self.by_operation.items()},
            "requests": self.requests,
            "token_replays": self.token_replays,
        }


# -- UpdateExpression: chained SET arithmetic --------------------------------
# DynamoDB's grammar (Developer Guide, "Using update expressions in DynamoDB",
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.UpdateExpressions.html,
# section "SET -- modifying or adding item attributes"):
#
#     update-expression ::= [ SET action [, action] ... ] [ REMOVE action [, action] ...]
#                           [ ADD action [, action] ... ] [ DELETE action [, action] ...]
#     set-action ::= path = value
#     value      ::= operand | operand '+' operand | operand '-' operand
#     operand    ::= path | function        (function: if_not_exists(path, value),
#                                            list_append(list1, list2))
#
# So a SET value holds at most one '+' or '-' outside a function's parentheses;
# DynamoDB's parser stops at the second one with "Syntax error; token: ..."
# while moto 5.2.5 evaluates the whole chain. Only that is checked here: any
# other oddity is left to moto, so no expression DynamoDB accepts is refused.
# Names, '#name' and ':value' placeholders are [A-Za-z0-9_] runs (a bare '-' is
# always minus, as in DynamoDB); clause keywords are reserved words, so a bare
# SET/REMOVE/ADD/DELETE at depth 0 (not after '.') always starts a clause.
UPDATE_CLAUSES = frozenset({"SET", "REMOVE", "ADD", "DELETE"})
_UPDATE_TOKEN = re.compile(r"[#:]?[A-Za-z0-9_]+|\S")


def chained_set_operator(expression: str) -> tuple[str, str] | None:
    """(token, near) of the first SET value's second top-level ``+``/``-``, or None.

    ``near`` is the source text from the token before the operator to the token
    after it, as in DynamoDB's message (``a = a - :x + :y`` -> ``("+", ":x + :y")``).
    """
    tokens = [(m.group(), m.start(), m.end()) for m in _UPDATE_TOKEN.finditer(expression)]
    clause: str | None = None
    depth = 0
    in_value = False  # after a SET action's '=', until its ',' or the next clause
    operators = 0
    for i, (text, _, _) in enumerate(tokens):
        if text in ("(", "["):
            depth += 1
        elif text in (")", "]"):
            depth -= 1
            if depth < 0:
                return None  # unbalanced: moto's own parser answers that
        elif depth > 0:
            continue  # inside a function call or list index: not the value's operators
        elif text.upper() in UPDATE_CLAUSES and (i == 0 or tokens[i - 1][0] != "."):
            clause, in_value, operators = text.upper(), False, 0
        elif clause != "SET":
            continue
        elif text == ",":
            in_value, operators = False, 0
        elif text == "=" and not in_value:
            in_value, operators = True, 0
        elif text in ("+", "-") and in_value:
            operators += 1
            if operators > 1:
                start = tokens[i - 1][1]
                end = tokens[i + 1][2] if i + 1 < len(tokens) else tokens[i][2]
                return text, expression[start:end]
    return None


def invalid_update_expression(op: str, request: Any) -> str | None:
    """DynamoDB's ValidationException message for a chained SET value in an
    UpdateItem or in any ``Update`` of a TransactWriteItems, else None."""
    if not isinstance(request, dict):
        return None
    if op == "UpdateItem":
        expressions = [request.get("UpdateExpression")]
    elif op == "TransactWriteItems":
        items = request.get("TransactItems")
        expressions = [item["Update"].get("UpdateExpression")
                       for item in (items if isinstance(items, list) else [])
                       if isinstance(item, dict) and isinstance(item.get("Update"), dict)]
    else:
        return None
    for expression in expressions:
        if isinstance(expression, str):
            hit = chained_set_operator(expression)
            if hit is not None:
                token, near = hit
                return f'Invalid UpdateExpression: Syntax error; token: "{token}", near: "{near}"'
    return None


# -- AWS-shaped answers -----------------------------------------------------
def _aws_json_error(status: str, headers: list[tuple[str, str]], body: dict[str, Any]) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return status, [
        ("Content-Type", AMZ_JSON),
        *headers,
        ("x-amzn-RequestId", uuid.uuid4().hex.upper()),
        ("Content-Length", str(len(data))),
    ], data


def ddb_error(status: str, name: str, body: dict[str, Any]) -> Response:
    data = json.dumps({"__type": DDB_PREFIX + name, **body}, separators=(",", ":")).encode()
    return status, [
        ("Content-Type", AMZ_JSON),
        ("x-amzn-ErrorType", name),
        ("x-amzn-RequestId", uuid.uuid4().hex.upper()),
        ("x-amz-crc32", str(zlib.crc32(data) & 0xFFFFFFFF)),
        ("Content-Length", str(len(data))),
    ], data


def ddb_internal() -> Response:
    return ddb_error("500 Internal Server Error", "InternalServerError",
                     {"message": "Internal server error"})


def ddb_throttle(pick: float) -> Response:
    if pick < 0.5:
        return ddb_error("400 Bad Request", "ThrottlingException", {"message": THROTTLING_MESSAGE})
    return ddb_error("400 Bad Request", "ProvisionedThroughputExceededException",
                     {"message": PROVISIONED_MESSAGE})


def ddb_conflict(request: Any, pick: float) -> Response:
    items = request.get("TransactItems") if isinstance(request, dict) else None
    n = len(items) if isinstance(items, list) and items else 1
    hit = min(int(pick * n), n - 1)
    reasons: list[dict[str, str]] = [{"Code": "None"} for _ in range(n)]
    reasons[hit] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
    codes = ", ".join(r["Code"] for r in reasons)
    return ddb_error("400 Bad Request", "TransactionCanceledException", {
        "Message": "Transaction cancelled, please refer cancellation reasons for specific "
                   f"reasons [{codes}]",
        "CancellationReasons": reasons,
    })


def ddb_validation(message: str) -> Response:
    return ddb_error("400 Bad Request", "ValidationException", {"message": message})


def ddb_idempotent_mismatch() -> Response:
    return ddb_error("400 Bad Request", "IdempotentParameterMismatchException", {
        "message": "The request uses the same client token as a previous, but non-identical request."})


def sqs_internal() -> Response:
    return _aws_json_error("500 Internal Server Error", [
        ("X-Amzn-ErrorType", "com.amazonaws.sqs#InternalError"),
        ("x-amzn-query-error", "InternalError;Receiver"),
    ], {"__type": "com.amazonaws.sqs#InternalError",
        "message": SQS_INTERNAL_MESSAGE, "Message": SQS_INTERNAL_MESSAGE})


def internal_error(service: str) -> Response:
    return ddb_internal() if service == "dynamodb" else sqs_internal()


def canonical_digest(body: bytes, parsed: Any) -> str:
    if parsed is not None:
        body = json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


def read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body and put it back as a fresh stream for moto."""
    stream = environ.get("wsgi.input")
    data = b""
    if stream is not None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > 0:
            data = stream.read(length)
        elif environ.get("wsgi.input_terminated"):
            data = stream.read()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    return data


class SerialisingMiddleware:
    """Serialise DynamoDB requests, count requests by operation, inject faults,
    implement ClientRequestToken, refuse chained SET arithmetic, serve /_emulator/."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: dict[str, Any] | None = None,
                 verbose: bool = False):
        self.app = app
        self.verbose = verbose
        self.dynamodb_lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.faults_lock = threading.Lock()
        self.scopes: dict[str, FaultScope] = {"": FaultScope()}
        self.scopes[""].configure(faults)
        # ClientRequestToken -> (request digest, moto's success answer, monotonic time);
        # only touched under dynamodb_lock
        self.tokens: dict[str, tuple[str, Response, float]] = {}

    # -- counters ---------------------------------------------------------
    def _count(self, target: str) -> None:
        for prefix, service in TARGET_SERVICES:
            if target.startswith(prefix):
                op = target.split(".", 1)[1] if "." in target else target
                with self.stats_lock:
                    self.stats[service][op] += 1
                return

    def _snapshot(self) -> dict[str, dict[str, int]]:
        with self.stats_lock:
            snap = {svc: dict(ops) for svc, ops in self.stats.items()}
        snap.setdefault("dynamodb", {})
        return snap

    def _reset(self) -> None:
        with self.stats_lock:
            self.stats.clear()

    @staticmethod
    def _json(start_response: Any, status: str, body: Any) -> list[bytes]:
        data = json.dumps(body, sort_keys=True).encode()
        start_response(
            status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    # -- faults control -----------------------------------------------------
    def set_faults(self, scope: str, config: dict[str, Any] | None) -> None:
        with self.faults_lock:
            self.scopes.setdefault(scope, FaultScope()).configure(config)
        if scope == "" or self.verbose:
            print(f"emulator: faults for scope {scope!r}: {format_fault_spec(config)}", flush=True)

    def _faults_api(self, environ: dict[str, Any], start_response: Any, method: str) -> list[bytes]:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        scope_q = (query.get("scope") or [None])[0]
        if method == "GET":
            with self.faults_lock:
                if scope_q is not None:
                    return self._json(start_response, "200 OK",
                                       self.scopes.get(scope_q, FaultScope()).snapshot())
                return self._json(start_response, "200 OK",
                                  {"scopes": {s: sc.snapshot() for s, sc in self.scopes.items()}})
        if method == "DELETE":
            scope = scope_q or ""
            with self.faults_lock:
                existed = self.scopes.pop(scope, None) is not None
                self.scopes.setdefault("", FaultScope())
            if scope == "" or self.verbose:
                print(f"emulator: faults for scope {scope!r} deleted", flush=True)
            return self._json(start_response, "200 OK", {"scope": scope, "deleted": existed})
        if method == "POST":
            try:
                req = json.loads(read_body(environ) or b"{}")
            except ValueError:
                return self._json(start_response, "400 Bad Request", {"error": "body is not valid JSON"})
            if not isinstance(req, dict) or "spec" not in req:
                return self._json(start_response, "400 Bad Request",
                                  {"error": 'body must be {"spec": "<spec>", "scope"?: "<prefix>"}'})
            scope = req.get("scope", "")
            if scope is None:
                scope = ""
            if not isinstance(scope, str):
                return self._json(start_response, "400 Bad Request", {"error": "scope must be a string"})
            try:
                config = parse_fault_spec(req["spec"])
            except FaultSpecError as e:
                return self._json(start_response, "400 Bad Request", {"error": str(e)})
            self.set_faults(scope, config)
            return self._json(start_response, "200 OK", {"scope": scope, "config": config})
        return self._json(start_response, "405 Method Not Allowed", {"error": "use GET, POST or DELETE"})

    def _decide(self, service: str, op: str, body: bytes) -> tuple[FaultScope, str | None, float]:
        text = body.decode("utf-8", "replace")
        with self.faults_lock:
            name = ""
            for s in self.scopes:
                if s and len(s) > len(name) and s in text:
                    name = s
            scope = self.scopes[name]
            kind, pick = scope.decide(service, op)
        return scope, kind, pick

    # -- calling moto -------------------------------------------------------
    def _call_moto(self, environ: dict[str, Any]) -> Response:
        """Run moto to completion (body drained) and capture its answer."""
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            captured["status"], captured["headers"] = status, list(headers)
            return chunks.append

        result = self.app(environ, capture)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], b"".join(chunks)

    @staticmethod
    def _answer(start_response: Any, response: Response) -> list[bytes]:
        status, headers, body = response
        start_response(status, headers)
        return [body]

    def _dynamodb(self, environ: dict[str, Any], op: str) -> Response:
        if op not in ELIGIBLE_OPS["dynamodb"]:
            with self.dynamodb_lock:
                return self._call_moto(environ)
        body = read_body(environ)
        parsed: Any = None
        if op in ("TransactWriteItems", "UpdateItem"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            invalid = invalid_update_expression(op, parsed)
            if invalid is not None:
                return ddb_validation(invalid)  # before any draw, token or moto
        scope, kind, pick = self._decide("dynamodb", op, body)
        if kind == "conflict":
            return ddb_conflict(parsed, pick)
        if kind == "throttle":
            return ddb_throttle(pick)
        if kind == "internal":
            return ddb_internal()

        token = parsed.get("ClientRequestToken") if isinstance(parsed, dict) else None
        with self.dynamodb_lock:
            if isinstance(token, str) and token:
                response = self._transact_with_token(environ, token, canonical_digest(body, parsed), scope)
            else:
                response = self._call_moto(environ)
        if kind == "lost_response":
            return ddb_internal()
        return response

    def _transact_with_token(self, environ: dict[str, Any], token: str, digest: str,
                             scope: FaultScope) -> Response:
        """TransactWriteItems with a ClientRequestToken; caller holds dynamodb_lock."""
        now = time.monotonic()
        for t in [t for t, (_, _, at) in self.tokens.items() if now - at >= TOKEN_TTL_S]:
            del self.tokens[t]
        entry = self.tokens.get(token)
        if entry is not None:
            stored_digest, stored, _ = entry
            if stored_digest != digest:
                return ddb_idempotent_mismatch()
            with self.faults_lock:
                scope.token_replays += 1
            return stored
        response = self._call_moto(environ)
        if response[0][:1] == "2":
            self.tokens[token] = (digest, response, now)
        return response

    def _sqs(self, environ: dict[str, Any], start_response: Any, op: str) -> Iterable[bytes]:
        if op not in ELIGIBLE_OPS["sqs"]:
            return self.app(environ, start_response)
        body = read_body(environ)
        _, kind, _ = self._decide("sqs", op, body)
        if kind == "internal":
            return self._answer(start_response, sqs_internal())
        if kind == "lost_response":
            self._call_moto(environ)  # applied, answer thrown away
            return self._answer(start_response, sqs_internal())
        return self.app(environ, start_response)

    # -- WSGI -------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/_emulator/"):
            p = path.rstrip("/")
            if p == STATS_PATH and method == "GET":
                return self._json(start_response, "200 OK", self._snapshot())
            if p == RESET_PATH and method == "POST":
                self._reset()
                return self._json(start_response, "200 OK", {"reset": True})
            if p == FAULTS_PATH:
                return self._faults_api(environ, start_response, method)
            return self._json(start_response, "404 Not Found", {"error": "unknown emulator path"})
        if path.rstrip("/") == MOTO_RESET_PATH and method == "POST":
            with self.dynamodb_lock:
                self.tokens.clear()
                return self._answer(start_response, self._call_moto(environ))

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            self._count(target)
        op = target.split(".", 1)[1] if "." in target else ""
        if target.startswith("AmazonSQS."):
            return self._sqs(environ, start_response, op)
        if not target.startswith("DynamoDB_"):
            return self.app(environ, start_response)
        # DynamoDB: moto runs, and its response is drained entirely, while holding
        # the lock, so the whole operation (including lazy body generation) is serialised.
        return self._answer(start_response, self._dynamodb(environ, op))


class QuietHandler(MotoRequestHandler):
    verbose = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.verbose:
            super().log_request(code, size)


def build_app(faults: dict[str, Any] | None = None, verbose: bool = False) -> SerialisingMiddleware:
    moto_app = DomainDispatcherApplication(create_backend_app)
    return SerialisingMiddleware(moto_app, faults=faults, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PURSE_EMULATOR_PORT", "4566"))
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    spec = os.environ.get(FAULTS_ENV, "")
    try:
        faults = parse_fault_spec(spec)
    except FaultSpecError as e:
        print(f"emulator: bad {FAULTS_ENV}={spec!r}: {e}", file=sys.stderr, flush=True)
        return 2

    os.environ["MOTO_PORT"] = str(args.port)
    QuietHandler.verbose = args.verbose
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    try:
        server = make_server(
            args.host, args.port, build_app(faults, args.verbose), threaded=True,
            request_handler=QuietHandler,
        )
    except OSError as e:
        print(f"emulator: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr, flush=True)
        return 1

    def stop(signum: int, frame: Any) -> None:
        # shutdown() blocks until serve_forever returns: call it off the main thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if faults is not None:
        print(f"emulator: faults on (global scope, from {FAULTS_ENV}): {format_fault_spec(faults)}",
              flush=True)
    print(f"emulator: listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("emulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
