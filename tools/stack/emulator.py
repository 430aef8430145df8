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
                                     "sqs": {...}, "secretsmanager": {...},
                                     "capacity": {"dynamodb": {...}}}   (see below)
    POST /_emulator/stats/reset  -> {"reset": true}   (zeroes the counters, capacity included)
  Operation names are the part of ``X-Amz-Target`` after the dot.
* DynamoDB consumed capacity, as real DynamoDB would charge it, in the same answer
  (and reset with it) under ``"capacity"``:
    {"capacity": {"dynamodb": {
        "write_units": 8.0, "read_units": 3.5,
        "index_write_units": 2.0,     (secondary index writes; NOT in write_units)
        "by_operation": {"TransactWriteItems": {"write_units": 6.0, "read_units": 0.0,
                                                "index_write_units": 0.0, "requests": 1}, ...},
        "largest_item_bytes": {"<entity, else pk up to the first '#'>": 649, ...},
        "failures": {"<op>": n},      (requests whose capacity could not be computed)
        "last_failure": "<op>: <exception>" | null}}}
  Computed for every data-plane request (GetItem PutItem UpdateItem DeleteItem Query
  Scan BatchGetItem BatchWriteItem TransactWriteItems TransactGetItems) that moto
  answered, under the DynamoDB lock, from moto's stored items before and after the
  call: item sizes by DynamoDB's rules; writes 1 unit per started KB of the larger
  of before/after; reads 1 unit per started 4 KB, halved when eventually consistent,
  minimum 0.5/1 for an absent item; Query/Scan the items read before any filter or
  projection, summed then rounded; transactions 2x per item (ConditionCheck: 2x the
  checked item's write units); failed conditions (ConditionalCheckFailedException,
  or a TransactionCanceledException for a failed condition) still charged: the item
  as it stands (a Put: the larger of it and the new item), 1 unit when there is none;
  other errors cost 0. A TransactWriteItems answered from the ClientRequestToken
  cache costs read units (1 per started 4 KB of each item), as DynamoDB documents.
  Requests refused by fault injection or the UpdateExpression check never reach
  moto and cost nothing; a ``lost_response`` is charged (it was applied). Index
  writes: adding or removing an index entry, or changing a projected attribute,
  1 unit per started KB of the projected entry; changing the index key, a delete
  plus a put. See "DynamoDB consumed capacity" in the code for the exact rules.
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
* IAM enforcement of each function's policy (``iam_policy.py`` describes it):
    POST /_emulator/iam        {"principals": {"<access key id>": {"function": F, "prefix": P,
                                "statements": [...], "mode"?: M}}, "mode"?: M}
                               registers principals (400 {"error"} for a policy the evaluator
                               cannot evaluate faithfully)
    GET  /_emulator/iam[?prefix=P]   {"mode": M, "principals": {akid: {"function", "prefix",
                                      "statements": n, "mode"}}}
    GET  /_emulator/iam/usage  {"mode", "denials": n, "functions": {F: [{"action", "resource",
                                "leading_key", "allowed", "count"}]}}  (tools/stack/iam_usage.py)
    POST /_emulator/iam/usage/reset
  A request signed (SigV4 ``Credential=<akid>/...``) by a registered principal must be allowed
  by its statements, else it gets the service's AccessDeniedException and a line on stderr;
  requests by anyone else pass. Mode from ``PURSE_IAM``: ``enforce`` (default), ``record``
  (allow, but log and count what would be denied), ``off``. Checked before fault injection;
  a refused request is counted in the stats but never reaches moto.
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
import copy
import hashlib
import inspect
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam_policy  # noqa: E402

STATS_PATH = "/_emulator/stats"
RESET_PATH = "/_emulator/stats/reset"
FAULTS_PATH = "/_emulator/faults"
MOTO_RESET_PATH = "/moto-api/reset"
FAULTS_ENV = "PURSE_EMULATOR_FAULTS"
IAM_PATH = "/_emulator/iam"
IAM_USAGE_PATH = "/_emulator/iam/usage"
IAM_USAGE_RESET_PATH = "/_emulator/iam/usage/reset"

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


# -- DynamoDB consumed capacity ------------------------------------------------
# What real DynamoDB would charge for each request moto answers, by the rules of
# the Developer Guide ("DynamoDB item sizes and formats", CapacityUnitCalculations;
# "Capacity unit consumption for reads/writes", ProvisionedThroughput /
# read-write-operations; "Capacity management for transactions", transaction-apis):
#
#   item size   sum over attributes of UTF-8 name bytes + value size, where
#               S: UTF-8 bytes; N: ceil(significant digits / 2) + 1 (+1 if negative);
#               B: raw bytes; BOOL/NULL: 1; SS/NS/BS: sum of the elements;
#               L/M: 3 + per element (1 + element size (+ UTF-8 name bytes for M)).
#   writes      1 unit per started KB of the larger of the item before and after
#               (PutItem, UpdateItem; DeleteItem: the deleted item; min 1).
#   reads       1 unit per started 4 KB, halved when eventually consistent (min 0.5:
#               an absent item costs the same as a small one). Query/Scan: the items
#               read (before FilterExpression/ProjectionExpression, up to Limit),
#               summed, then rounded up to 4 KB. BatchGetItem: each item rounded.
#   transactions  two units per item per rounding unit: TransactWriteItems
#               2 x write units per action (ConditionCheck: 2 x the checked item's
#               write units), TransactGetItems 2 x read units per item.
# Secondary indexes: writes that add, change or remove an index entry are counted
# apart, in ``index_write_units`` (1 unit per started KB of the projected entry;
# a changed index key costs a delete plus a put); index reads are Query/Scan reads
# of the projected entries.
KB = 1024
READ_UNIT_BYTES = 4096
_CREDENTIAL_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
_READS = threading.local()  # .log: list of (size, kind) of items read by a Query/Scan


def _type_value(value: Any) -> tuple[str, Any]:
    """(type, value) of a moto DynamoType or of a JSON AttributeValue {"S": ...}."""
    t = getattr(value, "type", None)
    if t is not None:
        return t, value.value
    (t, v), = value.items()
    return t, v


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def number_size(text: Any) -> int:
    """DynamoDB's size of a number: 1 byte per two significant digits, plus 1 (plus 1 if negative)."""
    s = str(text).strip().lower()
    negative = s.startswith("-")
    mantissa = s.lstrip("+-").split("e", 1)[0]
    digits = mantissa.replace(".", "").lstrip("0").rstrip("0")
    return (len(digits) + 1) // 2 + 1 + (1 if negative and digits else 0)


def _binary_len(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    text = str(value).strip()
    return len(text) * 3 // 4 - (len(text) - len(text.rstrip("=")))  # base64 -> raw bytes


def value_size(value: Any) -> int:
    """Size of one attribute value (without its name), DynamoDB's way."""
    t, v = _type_value(value)
    if t == "S":
        return _utf8_len(v)
    if t == "N":
        return number_size(v)
    if t == "B":
        return _binary_len(v)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(_utf8_len(x) for x in v)
    if t == "NS":
        return sum(number_size(x) for x in v)
    if t == "BS":
        return sum(_binary_len(x) for x in v)
    if t == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if t == "M":
        return 3 + sum(1 + _utf8_len(k) + value_size(x) for k, x in v.items())
    raise ValueError(f"unknown attribute type {t!r}")


def item_size(attrs: Any) -> int:
    """Size of an item: a moto Item, its ``attrs``, or a JSON item {"name": {"S": ...}}."""
    attrs = getattr(attrs, "attrs", attrs)
    return sum(_utf8_len(name) + value_size(v) for name, v in attrs.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


def item_kind(table: Any, attrs: Any) -> str:
    """``entity`` if the item has it (a string), else its partition key up to the first '#'."""
    attrs = getattr(attrs, "attrs", attrs)
    entity = attrs.get("entity")
    if entity is not None:
        t, v = _type_value(entity)
        if t == "S":
            return v
    pk = attrs.get(getattr(table, "hash_key_attr", None) or "pk")
    if pk is not None:
        t, v = _type_value(pk)
        return str(v).split("#", 1)[0]
    return "?"


def request_region(environ: dict[str, Any]) -> str:
    m = _CREDENTIAL_REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def _recording(original: Callable[..., Any], projection_param: str) -> Callable[..., Any]:
    """Wraps moto's Table.query/Table.scan so that, while ``_READS.log`` is a list, the
    items read (before FilterExpression and ProjectionExpression) are logged there.
    moto applies both after reading, so they are applied here the same way."""
    signature = inspect.signature(original)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        log = getattr(_READS, "log", None)
        if log is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        filter_expression = bound.arguments.get("filter_expression")
        projection = bound.arguments.get(projection_param)
        bound.arguments["filter_expression"] = None
        bound.arguments[projection_param] = None
        results, scanned_count, last_evaluated_key = original(*bound.args, **bound.kwargs)
        log.extend((item_size(r), item_kind(self, r)) for r in results)
        if filter_expression is not None:
            results = [r for r in results if filter_expression.expr(r)]
        if projection:
            results = [r.project(projection) for r in results]
        return results, scanned_count, last_evaluated_key

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper._purse_recording = True  # type: ignore[attr-defined]
    return wrapper


def install_read_recorder() -> None:
    """Once per process: moto's Table.query/scan log the items they read (see _recording)."""
    from moto.dynamodb.models.table import Table
    if not getattr(Table.query, "_purse_recording", False):
        Table.query = _recording(Table.query, "projection_expressions")  # type: ignore[method-assign]
    if not getattr(Table.scan, "_purse_recording", False):
        Table.scan = _recording(Table.scan, "projection_expression")  # type: ignore[method-assign]


class _Target:
    """One item a write/read request touches, with what was there before."""
    __slots__ = ("action", "table", "key", "new_item", "consistent", "before", "before_size")

    def __init__(self, action: str, table: Any, key: dict[str, Any] | None,
                 new_item: dict[str, Any] | None = None, consistent: bool = True):
        self.action = action  # Put Update Delete ConditionCheck Get
        self.table = table    # moto Table, or None when it does not exist (moto answers an error)
        self.key = key
        self.new_item = new_item
        self.consistent = consistent
        self.before: Any = None
        self.before_size: int | None = None


class CapacityProbe:
    """Capacity of one DynamoDB request: ``start`` before moto runs (under the
    DynamoDB lock), ``finish`` after. Raises on anything unexpected; the caller
    records that as a failure and the request goes on untouched."""

    WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})

    def __init__(self, op: str, request: Any, region: str):
        self.op = op
        self.request = request if isinstance(request, dict) else {}
        self.region = region
        self.targets: list[_Target] = []
        self.recording = False

    # -- moto's state ---------------------------------------------------------
    def _backend(self) -> Any:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        return dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _table(self, backend: Any, name: Any) -> Any:
        if not isinstance(name, str):
            return None
        table = backend.tables.get(name)
        if table is None:  # by ARN, as moto allows
            table = next((t for t in list(backend.tables.values()) if t.table_arn == name), None)
        return table

    @staticmethod
    def _stored(target: _Target) -> Any:
        table, key = target.table, target.key
        if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
            return None
        from moto.dynamodb.models.dynamo_type import DynamoType
        hash_key = DynamoType(key[table.hash_key_attr])
        if table.range_key_attr:
            if table.range_key_attr not in key:
                return None
            return table.items.get(hash_key, {}).get(DynamoType(key[table.range_key_attr]))
        return table.items.get(hash_key)

    @staticmethod
    def _key_of(table: Any, item: Any) -> dict[str, Any] | None:
        if table is None or not isinstance(item, dict):
            return None
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {n: item[n] for n in names if n in item}

    # -- before moto ------------------------------------------------------------
    def start(self) -> None:
        op, req = self.op, self.request
        backend = self._backend()
        if op in ("Query", "Scan"):
            _READS.log = []
            self.recording = True
            return
        if op in ("PutItem", "UpdateItem", "DeleteItem", "GetItem"):
            table = self._table(backend, req.get("TableName"))
            action = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete", "GetItem": "Get"}[op]
            item = req.get("Item") if op == "PutItem" else None
            key = self._key_of(table, item) if op == "PutItem" else req.get("Key")
            self.targets.append(_Target(action, table, key, item, bool(req.get("ConsistentRead"))))
        elif op == "TransactWriteItems":
            for entry in req.get("TransactItems") or []:
                for action in ("Put", "Update", "Delete", "ConditionCheck"):
                    spec = entry.get(action) if isinstance(entry, dict) else None
                    if isinstance(spec, dict):
                        table = self._table(backend, spec.get("TableName"))
                        item = spec.get("Item") if action == "Put" else None
                        key = self._key_of(table, item) if action == "Put" else spec.get("Key")
                        self.targets.append(_Target(action, table, key, item))
        elif op == "TransactGetItems":
            for entry in req.get("TransactItems") or []:
                spec = entry.get("Get") if isinstance(entry, dict) else None
                if isinstance(spec, dict):
                    self.targets.append(_Target("Get", self._table(backend, spec.get("TableName")),
                                                spec.get("Key")))
        elif op == "BatchWriteItem":
            for name, requests in (req.get("RequestItems") or {}).items():
                table = self._table(backend, name)
                for r in requests or []:
                    if not isinstance(r, dict):
                        continue
                    if isinstance(r.get("PutRequest"), dict):
                        item = r["PutRequest"].get("Item")
                        self.targets.append(_Target("Put", table, self._key_of(table, item), item))
                    elif isinstance(r.get("DeleteRequest"), dict):
                        self.targets.append(_Target("Delete", table, r["DeleteRequest"].get("Key")))
        elif op == "BatchGetItem":
            for name, spec in (req.get("RequestItems") or {}).items():
                table = self._table(backend, name)
                spec = spec if isinstance(spec, dict) else {}
                for key in spec.get("Keys") or []:
                    self.targets.append(_Target("Get", table, key, None, bool(spec.get("ConsistentRead"))))
        for target in self.targets:
            stored = self._stored(target)
            if stored is not None:
                target.before_size = item_size(stored)
                # moto updates items in place: keep a copy when indexes need the old state
                needs_copy = op in self.WRITE_OPS and target.action != "ConditionCheck" and \
                    bool(target.table.all_indexes())
                target.before = copy.deepcopy(stored) if needs_copy else stored

    def stop_recording(self) -> list[tuple[int, str]]:
        log = getattr(_READS, "log", None) or []
        _READS.log = None
        self.recording = False
        return log

    # -- after moto -------------------------------------------------------------
    def finish(self, status: str, body: bytes, replayed: bool = False) -> dict[str, Any]:
        """{"read_units", "write_units", "index_write_units", "items": [(kind, size)]}."""
        read = write = index_write = 0.0
        items: list[tuple[str, int]] = []
        read_log = self.stop_recording() if self.recording else []
        outcome = self._outcome(status, body)
        op = self.op
        if outcome == "error":
            return {"read_units": 0.0, "write_units": 0.0, "index_write_units": 0.0, "items": []}
        if op in ("Query", "Scan"):
            total = sum(size for size, _ in read_log)
            consistent = bool(self.request.get("ConsistentRead"))
            read = read_units(total) * (1.0 if consistent else 0.5)
            items = [(kind, size) for size, kind in read_log]
        elif replayed:
            # an idempotent TransactWriteItems replay reads the items instead of writing them
            for t in self.targets:
                read += read_units(t.before_size or 0)
                self._remember(items, t.table, t.before, t.before_size)
        else:
            factor = 2.0 if op in ("TransactWriteItems", "TransactGetItems") else 1.0
            for t in self.targets:
                if t.action == "Get":
                    size = t.before_size or 0
                    units = float(read_units(size))
                    read += factor * units if op == "TransactGetItems" else \
                        units * (1.0 if t.consistent else 0.5)
                    self._remember(items, t.table, t.before, t.before_size)
                    continue
                if t.action == "ConditionCheck":
                    write += factor * write_units(t.before_size or 0)
                    continue
                if outcome == "ok":
                    after = self._stored(t)
                    after_size = item_size(after) if after is not None else None
                    if t.action == "Delete":
                        size = t.before_size or 0
                    else:
                        size = max(t.before_size or 0, after_size or 0)
                    write += factor * write_units(size)
                    index_write += self._index_writes(t, after)
                    if after is not None:
                        self._remember(items, t.table, after, after_size)
                    else:
                        self._remember(items, t.table, t.before, t.before_size)
                else:  # a failed condition: nothing written, still charged
                    if t.before_size is None:
                        units = 1
                    elif t.action == "Put" and isinstance(t.new_item, dict):
                        units = write_units(max(t.before_size, item_size(t.new_item)))
                    else:
                        units = write_units(t.before_size)
                    write += factor * units
        return {"read_units": read, "write_units": write, "index_write_units": index_write, "items": items}

    @staticmethod
    def _outcome(status: str, body: bytes) -> str:
        """"ok" (2xx), "condition" (a failed condition: charged) or "error" (not charged)."""
        if status[:1] == "2":
            return "ok"
        if status[:3] == "400":
            try:
                kind = str(json.loads(body).get("__type", ""))
            except (ValueError, AttributeError):
                return "error"
            if kind.endswith("#ConditionalCheckFailedException") or kind == "ConditionalCheckFailedException":
                return "condition"
            if kind.endswith("TransactionCanceledException") and b"ConditionalCheckFailed" in body:
                return "condition"
        return "error"

    @staticmethod
    def _remember(items: list[tuple[str, int]], table: Any, item: Any, size: int | None) -> None:
        if item is not None and size is not None:
            items.append((item_kind(table, item), size))

    @staticmethod
    def _index_entry(table: Any, index: Any, item: Any) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if item is None:
            return None
        attrs = item.attrs
        keys = [k["AttributeName"] for k in index.schema]
        if any(k not in attrs for k in keys):
            return None  # sparse: not in the index
        projection = (index.projection or {}).get("ProjectionType", "ALL")
        if projection == "ALL":
            projected = dict(attrs)
        else:
            names = set(keys) | {table.hash_key_attr} | ({table.range_key_attr} if table.range_key_attr else set())
            if projection == "INCLUDE":
                names |= set(index.projection.get("NonKeyAttributes") or [])
            projected = {n: v for n, v in attrs.items() if n in names}
        return tuple(attrs[k] for k in keys), projected

    def _index_writes(self, target: _Target, after: Any) -> float:
        table = target.table
        if table is None:
            return 0.0
        units = 0
        for index in table.all_indexes():
            old = self._index_entry(table, index, target.before)
            new = self._index_entry(table, index, after)
            if old is None and new is None:
                continue
            if old is None or new is None:
                units += write_units(item_size((new or old)[1]))  # type: ignore[index]
            elif old[0] != new[0]:  # the index key changed: delete the old entry, put the new one
                units += write_units(item_size(old[1])) + write_units(item_size(new[1]))
            elif old[1] != new[1]:
                units += write_units(max(item_size(old[1]), item_size(new[1])))
        return float(units)


class CapacityMeter:
    """Consumed capacity totals for GET /_emulator/stats (reset with the counters)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.read = 0.0
            self.write = 0.0
            self.index_write = 0.0
            self.by_operation: dict[str, dict[str, float]] = {}
            self.largest: dict[str, int] = {}
            self.failures: dict[str, int] = {}
            self.last_failure: str | None = None

    def _op(self, op: str) -> dict[str, float]:
        entry = self.by_operation.get(op)
        if entry is None:
            entry = self.by_operation[op] = {"read_units": 0.0, "write_units": 0.0,
                                             "index_write_units": 0.0, "requests": 0}
        return entry

    def add(self, op: str, used: dict[str, Any]) -> None:
        with self.lock:
            entry = self._op(op)
            entry["requests"] += 1
            entry["read_units"] += used["read_units"]
            entry["write_units"] += used["write_units"]
            entry["index_write_units"] += used["index_write_units"]
            self.read += used["read_units"]
            self.write += used["write_units"]
            self.index_write += used["index_write_units"]
            for kind, size in used["items"]:
                if size > self.largest.get(kind, -1):
                    self.largest[kind] = size

    def fail(self, op: str, error: BaseException) -> None:
        with self.lock:
            self._op(op)["requests"] += 1
            self.failures[op] = self.failures.get(op, 0) + 1
            self.last_failure = f"{op}: {type(error).__name__}: {error}"

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "read_units": self.read,
                "write_units": self.write,
                "index_write_units": self.index_write,
                "by_operation": {op: dict(e) for op, e in self.by_operation.items()},
                "largest_item_bytes": dict(self.largest),
                "failures": dict(self.failures),
                "last_failure": self.last_failure,
            }


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


# -- IAM: what moto knows that the evaluator needs ----------------------------
class MotoResolver:
    """Key schemas and secret ARNs from moto's state, for ``iam_policy.request_checks``."""

    def __init__(self, region: str):
        from moto.core import DEFAULT_ACCOUNT_ID
        self.region = region
        self.account = DEFAULT_ACCOUNT_ID

    def partition_key(self, table: str, index: str | None) -> str | None:
        from moto.dynamodb.models import dynamodb_backends
        t = dynamodb_backends[self.account][self.region].tables.get(table)
        if t is None:
            return None
        if index is None:
            return t.hash_key_attr or None
        idx = next((i for i in list(t.indexes) + list(t.global_indexes) if i.name == index), None)
        return next((k["AttributeName"] for k in (idx.schema if idx else []) if k.get("KeyType") == "HASH"), None)

    def secret_arn(self, secret_id: str) -> str:
        from moto.secretsmanager.models import secretsmanager_backends
        try:
            secret = secretsmanager_backends[self.account][self.region].secrets.get(secret_id)
        except Exception:
            secret = None
        if secret is not None and getattr(secret, "arn", None):
            return str(secret.arn)
        if secret_id.startswith("arn:"):
            return secret_id
        return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{secret_id}"


def iam_service_of(target: str) -> tuple[str, str] | None:
    for prefix, service in iam_policy.SERVICE_OF_TARGET:
        if target.startswith(prefix):
            return service, target.split(".", 1)[1] if "." in target else ""
    return None


class SerialisingMiddleware:
    """Serialise DynamoDB requests, count requests by operation, inject faults,
    implement ClientRequestToken, refuse chained SET arithmetic, serve /_emulator/."""

    def __init__(self, app: Callable[..., Iterable[bytes]], faults: dict[str, Any] | None = None,
                 verbose: bool = False, iam_mode: str = "enforce"):
        self.app = app
        self.verbose = verbose
        self.iam = iam_policy.IamRegistry(iam_mode)
        self.dynamodb_lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.faults_lock = threading.Lock()
        self.scopes: dict[str, FaultScope] = {"": FaultScope()}
        self.scopes[""].configure(faults)
        # ClientRequestToken -> (request digest, moto's success answer, monotonic time);
        # only touched under dynamodb_lock
        self.tokens: dict[str, tuple[str, Response, float]] = {}
        self.capacity = CapacityMeter()
        install_read_recorder()

    # -- counters ---------------------------------------------------------
    def _count(self, target: str) -> None:
        for prefix, service in TARGET_SERVICES:
            if target.startswith(prefix):
                op = target.split(".", 1)[1] if "." in target else target
                with self.stats_lock:
                    self.stats[service][op] += 1
                return

    def _snapshot(self) -> dict[str, Any]:
        with self.stats_lock:
            snap: dict[str, Any] = {svc: dict(ops) for svc, ops in self.stats.items()}
            snap["capacity"] = {"dynamodb": self.capacity.snapshot()}
        snap.setdefault("dynamodb", {})
        return snap

    def _reset(self) -> None:
        with self.stats_lock:
            self.stats.clear()
            self.capacity.reset()

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

    # -- IAM ----------------------------------------------------------------
    def _iam_api(self, environ: dict[str, Any], start_response: Any, path: str, method: str) -> list[bytes]:
        if path == IAM_USAGE_PATH and method == "GET":
            return self._json(start_response, "200 OK", self.iam.usage_snapshot())
        if path == IAM_USAGE_RESET_PATH and method == "POST":
            self.iam.reset_usage()
            return self._json(start_response, "200 OK", {"reset": True})
        if path == IAM_PATH and method == "GET":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            return self._json(start_response, "200 OK", self.iam.describe((query.get("prefix") or [None])[0]))
        if path == IAM_PATH and method == "POST":
            try:
                req = json.loads(read_body(environ) or b"{}")
            except ValueError:
                return self._json(start_response, "400 Bad Request", {"error": "body is not valid JSON"})
            try:
                answer = self.iam.register(req)
            except iam_policy.PolicyError as e:
                print(f"emulator: IAM registration refused: {e}", file=sys.stderr, flush=True)
                return self._json(start_response, "400 Bad Request", {"error": str(e)})
            if self.verbose:
                print(f"emulator: IAM registered {len(answer['registered'])} principal(s)", flush=True)
            return self._json(start_response, "200 OK", answer)
        return self._json(start_response, "405 Method Not Allowed", {"error": "unknown IAM call"})

    def _iam_denial(self, environ: dict[str, Any], target: str) -> Response | None:
        """The AccessDeniedException for a registered principal's request its policy does
        not allow (enforce mode), else None."""
        principal = self.iam.principal(environ.get("HTTP_AUTHORIZATION", ""))
        if principal is None:
            return None
        found = iam_service_of(target)
        if found is None:
            return None
        service, op = found
        body = read_body(environ)
        try:
            parsed: Any = json.loads(body) if body else {}
        except ValueError:
            parsed = {}
        decision = self.iam.authorize(principal, service, op, parsed, MotoResolver(request_region(environ)))
        if decision.allowed:
            return None
        return iam_policy.access_denied(service, decision.message)

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
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        if op in ("TransactWriteItems", "UpdateItem"):
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
            # capacity: moto's items are read before and after the call, under the lock;
            # a failing computation is recorded and the request goes on untouched
            probe: CapacityProbe | None = CapacityProbe(op, parsed, request_region(environ))
            try:
                probe.start()  # type: ignore[union-attr]
            except Exception as e:
                self._capacity_failed(op, e, probe)
                probe = None
            try:
                if isinstance(token, str) and token:
                    response, replayed = self._transact_with_token(
                        environ, token, canonical_digest(body, parsed), scope)
                else:
                    response, replayed = self._call_moto(environ), False
            except BaseException:
                if probe is not None and probe.recording:
                    probe.stop_recording()
                raise
            if probe is not None:
                try:
                    self.capacity.add(op, probe.finish(response[0], response[2], replayed))
                except Exception as e:
                    self._capacity_failed(op, e, probe)
        if kind == "lost_response":
            return ddb_internal()  # applied (and charged), answer thrown away
        return response

    def _capacity_failed(self, op: str, error: BaseException, probe: CapacityProbe | None) -> None:
        if probe is not None and probe.recording:
            probe.stop_recording()
        self.capacity.fail(op, error)
        if self.verbose:
            print(f"emulator: capacity of {op} not computed: {type(error).__name__}: {error}", flush=True)

    def _transact_with_token(self, environ: dict[str, Any], token: str, digest: str,
                             scope: FaultScope) -> tuple[Response, bool]:
        """TransactWriteItems with a ClientRequestToken; caller holds dynamodb_lock.
        Returns (answer, whether it was replayed from the token cache)."""
        now = time.monotonic()
        for t in [t for t, (_, _, at) in self.tokens.items() if now - at >= TOKEN_TTL_S]:
            del self.tokens[t]
        entry = self.tokens.get(token)
        if entry is not None:
            stored_digest, stored, _ = entry
            if stored_digest != digest:
                return ddb_idempotent_mismatch(), False
            with self.faults_lock:
                scope.token_replays += 1
            return stored, True
        response = self._call_moto(environ)
        if response[0][:1] == "2":
            self.tokens[token] = (digest, response, now)
        return response, False

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
            if p.startswith(IAM_PATH):
                return self._iam_api(environ, start_response, p, method)
            return self._json(start_response, "404 Not Found", {"error": "unknown emulator path"})
        if path.rstrip("/") == MOTO_RESET_PATH and method == "POST":
            with self.dynamodb_lock:
                self.tokens.clear()
                return self._answer(start_response, self._call_moto(environ))

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            self._count(target)
            denial = self._iam_denial(environ, target)
            if denial is not None:
                return self._answer(start_response, denial)
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
    # Keep connections alive between requests, as DynamoDB and SQS do: under HTTP/1.0 every AWS
    # request would open a new connection, and the benchmarks would charge the functions for it
    # (about 0.1 ms of client CPU per request here; docs/benchmarks.md).
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.verbose:
            super().log_request(code, size)


def build_app(faults: dict[str, Any] | None = None, verbose: bool = False,
              iam_mode: str = "enforce") -> SerialisingMiddleware:
    moto_app = DomainDispatcherApplication(create_backend_app)
    return SerialisingMiddleware(moto_app, faults=faults, verbose=verbose, iam_mode=iam_mode)


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

    iam_mode = os.environ.get(iam_policy.MODE_ENV, "").strip().lower() or "enforce"
    if iam_mode not in iam_policy.MODES:
        print(f"emulator: bad {iam_policy.MODE_ENV}={iam_mode!r}: one of {', '.join(iam_policy.MODES)}",
              file=sys.stderr, flush=True)
        return 2

    os.environ["MOTO_PORT"] = str(args.port)
    QuietHandler.verbose = args.verbose
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    try:
        server = make_server(
            args.host, args.port, build_app(faults, args.verbose, iam_mode), threaded=True,
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
    if iam_mode != "enforce":
        print(f"emulator: IAM {iam_mode} (from {iam_policy.MODE_ENV})", flush=True)
    print(f"emulator: listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("emulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
