"""IAM enforcement for the local emulator: each function's policy from template.yaml, evaluated
on every request it signs, so a test run proves the declared permissions are sufficient.

How it fits together
--------------------
* tools/local (Rust) gives every function its own credentials: the access key id names the
  function and the stack (``purse_local::iam::principal``), the secret is the usual dummy. It
  resolves the function's ``Policies`` (explicit ``Statement`` documents and the SAM policy
  templates, expanded as SAM does) to statements with the stack's local ARNs and registers them
  here before any function starts: ``POST /_emulator/iam``.
* The emulator (``emulator.py``) reads the access key id from each request's SigV4
  ``Authorization`` header. A request signed by a registered principal is turned into IAM
  checks (``request_checks``: action, resource ARN, condition context) and every check must be
  allowed (``evaluate``); anything else -- the test harness's own "testing" key, moto's control
  API -- passes untouched, as an administrator would.
* A refused request gets the service's AccessDeniedException (``access_denied``) and a line on
  the emulator's stderr naming principal, action, resource and leading keys.
* Every check is counted in a usage record (function, action, resource with the stack prefix
  replaced by ``{prefix}``, leading-key prefix, allowed?): ``GET /_emulator/iam/usage``;
  ``tools/stack/iam_usage.py`` prints it per function.

Evaluation (as AWS evaluates identity-based policies, for what Purse uses):
  an explicit Deny wins; else allowed iff some Allow statement matches. A statement matches when
  its Action (or NotAction) matches -- case-insensitive, ``*`` and ``?`` wildcards --, its
  Resource (or NotResource) matches the ARN -- case-sensitive globs --, and every condition
  holds. Condition operators: String{Equals,NotEquals,EqualsIgnoreCase,NotEqualsIgnoreCase,Like,
  NotLike}, Bool, Null, each optionally ``ForAllValues:``/``ForAnyValue:`` and ``...IfExists``.
  ``ForAllValues`` over a key the request does not carry is TRUE (AWS's documented pitfall: a
  Scan has no ``dynamodb:LeadingKeys``), ``ForAnyValue`` over it FALSE; a single-valued operator
  needs the key present (``IfExists``: absent is true) and, for a multi-valued key, every value
  to match. An unknown operator or policy variable is refused at registration (400), so no
  policy silently grants more than it says. Besides ``dynamodb:LeadingKeys`` the context holds
  aws:SecureTransport (true, as in AWS over https), aws:RequestedRegion, aws:PrincipalAccount and
  aws:PrincipalArn; any other key is absent.

Request -> checks:
  DynamoDB  Get/Put/Update/DeleteItem, Query, Scan and the other table operations: dynamodb:<Op>
            on ``table/<t>`` (``table/<t>/index/<i>`` with IndexName); BatchGetItem and
            BatchWriteItem one check per table with the set of its items' partition keys;
            TransactGetItems dynamodb:GetItem per item; TransactWriteItems dynamodb:PutItem /
            UpdateItem / DeleteItem / ConditionCheckItem per item. ``dynamodb:LeadingKeys`` is the
            partition key value(s) of the items addressed -- for a Query, the equality value on
            the queried table's or index's partition key.
  SQS       sqs:<Op> on the queue ARN (from QueueUrl or QueueName); the *Batch operations are
            authorised as their single action (SendMessageBatch -> sqs:SendMessage), as in SQS.
  Secrets   secretsmanager:<Op> on the secret's full ARN (a name is looked up as moto stores it).
  Other targets of those services without a resource: ``*``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import uuid
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

MODES = ("enforce", "record", "off")
MODE_ENV = "PURSE_IAM"

# -- wildcards ----------------------------------------------------------------
def _glob_regex(pattern: str) -> str:
    return "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)


def compile_globs(patterns: list[str], ignore_case: bool = False) -> re.Pattern[str]:
    """One regex matching any of the IAM wildcard patterns (``*`` any run, also across ``:``
    and ``/``; ``?`` one character)."""
    alternatives = "|".join(f"(?:{_glob_regex(p)})" for p in patterns) or "(?!)"
    return re.compile(alternatives, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return compile_globs([pattern], ignore_case).fullmatch(value) is not None


# -- policies -----------------------------------------------------------------
class PolicyError(ValueError):
    pass


STRING_OPS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "Bool", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


@dataclass
class Statement:
    effect: str                       # "Allow" | "Deny"
    actions: list[str]
    not_actions: bool
    resources: list[str]
    not_resources: bool
    conditions: list[tuple[str, str, str, bool, str, list[str]]]  # (qualifier, op, if_exists...)
    sid: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.action_rx = compile_globs(self.actions, ignore_case=True)
        self.resource_rx = compile_globs(self.resources)
        # the Like/Arn operators' values as one regex per condition
        self.like_rx = [compile_globs(vals) for (_, _, _, _, _, vals) in self.conditions]


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return [v if isinstance(v, str) else ("true" if v is True else "false" if v is False else str(v))
                for v in value]
    raise PolicyError(f"{what} must be a string or a list of strings, got {value!r}")


def parse_condition_operator(name: str) -> tuple[str, str, bool]:
    """``ForAllValues:StringLike`` -> ("ForAllValues", "StringLike", False)."""
    qualifier = ""
    op = name
    if ":" in name:
        qualifier, op = name.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise PolicyError(f"unknown condition set qualifier {qualifier!r} in {name!r}")
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    if op not in STRING_OPS and op != "Null":
        raise PolicyError(f"condition operator {name!r} is not supported by the local IAM evaluator")
    if op == "Null" and (qualifier or if_exists):
        raise PolicyError(f"condition operator {name!r} is not valid")
    return qualifier, op, if_exists


def parse_statement(raw: Any) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError(f"a statement must be an object, got {raw!r}")
    unknown = set(raw) - {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
    if unknown:
        raise PolicyError(f"statement has unsupported elements {sorted(unknown)} (Principal? not in an "
                          "identity-based policy)")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Effect must be Allow or Deny, got {effect!r}")
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError("a statement needs exactly one of Action and NotAction")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise PolicyError("a statement needs exactly one of Resource and NotResource")
    actions = _strings(raw.get("Action", raw.get("NotAction")), "Action")
    resources = _strings(raw.get("Resource", raw.get("NotResource")), "Resource")
    for text in actions + resources:
        if "${" in text:
            raise PolicyError(f"unresolved reference or policy variable in {text!r}")
    conditions = []
    cond = raw.get("Condition", {})
    if not isinstance(cond, dict):
        raise PolicyError("Condition must be an object")
    for op_name, block in cond.items():
        qualifier, op, if_exists = parse_condition_operator(op_name)
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"condition {op_name} must map keys to values")
        for key, values in block.items():
            vals = _strings(values, f"condition {op_name} {key}")
            for v in vals:
                if "${" in v:
                    raise PolicyError(f"policy variables are not supported: {v!r}")
            conditions.append((qualifier, op, op_name, if_exists, key, vals))
    return Statement(effect, actions, "NotAction" in raw, resources, "NotResource" in raw,
                     conditions, str(raw.get("Sid", "")), raw)


def parse_policy(statements: Any) -> list[Statement]:
    if isinstance(statements, dict) and "Statement" in statements:
        statements = statements["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise PolicyError("statements must be a list")
    return [parse_statement(s) for s in statements]


# -- evaluation ---------------------------------------------------------------
@dataclass
class Check:
    """One authorisation AWS would make for a request."""
    action: str                                   # "dynamodb:PutItem"
    resource: str                                 # ARN or "*"
    context: dict[str, list[str]] = field(default_factory=dict)  # condition keys -> values

    @property
    def leading_keys(self) -> list[str] | None:
        return self.context.get("dynamodb:LeadingKeys")


_GLOB_OPS = {"StringLike", "StringNotLike", "ArnLike", "ArnNotLike", "ArnEquals", "ArnNotEquals"}


def _single_matches(op: str, policy_values: list[str], value: str, rx: re.Pattern[str] | None = None) -> bool:
    """One request value against the policy's values (OR), negation applied."""
    if op in _GLOB_OPS:
        hit = (rx or compile_globs(policy_values)).fullmatch(value) is not None
    elif op in ("StringEquals", "StringNotEquals"):
        hit = value in policy_values
    elif op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "Bool"):
        hit = value.lower() in (pv.lower() for pv in policy_values)
    else:
        raise PolicyError(op)
    return not hit if op in _NEGATED else hit


def condition_holds(qualifier: str, op: str, if_exists: bool, key: str, policy_values: list[str],
                    context: dict[str, list[str]], rx: re.Pattern[str] | None = None) -> bool:
    values = context.get(key)
    present = values is not None and len(values) > 0
    if op == "Null":
        want_absent = policy_values[0].lower() == "true"
        return (not present) == want_absent
    if qualifier == "ForAllValues":
        # true when every request value matches -- vacuously true for a missing or empty key
        return all(_single_matches(op, policy_values, v, rx) for v in (values or []))
    if qualifier == "ForAnyValue":
        return any(_single_matches(op, policy_values, v, rx) for v in (values or []))
    if not present:
        return if_exists
    return all(_single_matches(op, policy_values, v, rx) for v in values or [])


def statement_matches(st: Statement, check: Check) -> bool:
    if (st.action_rx.fullmatch(check.action) is not None) == st.not_actions:
        return False
    if (st.resource_rx.fullmatch(check.resource) is not None) == st.not_resources:
        return False
    return all(condition_holds(q, op, ie, key, vals, check.context, rx)
               for (q, op, _, ie, key, vals), rx in zip(st.conditions, st.like_rx))


def evaluate(statements: list[Statement], check: Check) -> str:
    """"allow", "deny" (explicit) or "implicit" (no statement allows)."""
    if any(st.effect == "Deny" and statement_matches(st, check) for st in statements):
        return "deny"
    if any(st.effect == "Allow" and statement_matches(st, check) for st in statements):
        return "allow"
    return "implicit"


# -- requests -> checks -------------------------------------------------------
class Resolver(Protocol):
    region: str
    account: str

    def partition_key(self, table: str, index: str | None) -> str | None: ...
    def secret_arn(self, secret_id: str) -> str: ...


def _attr_string(value: Any) -> str | None:
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (kind, v), = value.items()
    if kind in ("S", "N", "B") and isinstance(v, str):
        return v
    return None


def table_name_of(name: str) -> str:
    # TableName may be an ARN
    if name.startswith("arn:") and ":table/" in name:
        return name.split(":table/", 1)[1].split("/", 1)[0]
    return name


def table_arn(r: Resolver, name: str, index: str | None = None) -> str:
    if name.startswith("arn:"):
        base = name
    else:
        base = f"arn:aws:dynamodb:{r.region}:{r.account}:table/{name}"
    return f"{base}/index/{index}" if index else base


def _item_leading(r: Resolver, table: str, attrs: Any) -> list[str]:
    pk = r.partition_key(table_name_of(table), None)
    if pk is None or not isinstance(attrs, dict):
        return []
    v = _attr_string(attrs.get(pk))
    return [v] if v is not None else []


_KEY_EQ = re.compile(r"^\(*\s*([#A-Za-z0-9_.:\-]+)\s*=\s*([#A-Za-z0-9_.:\-]+)\s*\)*$")


def query_leading_keys(req: dict[str, Any], pk: str | None) -> list[str]:
    """The equality value on the partition key ``pk`` in a Query's key condition."""
    if pk is None:
        return []
    names = req.get("ExpressionAttributeNames") or {}
    values = req.get("ExpressionAttributeValues") or {}
    expr = req.get("KeyConditionExpression")
    if isinstance(expr, str):
        for part in re.split(r"\s+(?i:and)\s+", expr.strip()):
            m = _KEY_EQ.match(part.strip())
            if not m:
                continue
            a, b = m.group(1), m.group(2)
            for name, val in ((a, b), (b, a)):
                resolved = names.get(name, name) if name.startswith("#") else name
                if resolved == pk and val.startswith(":"):
                    v = _attr_string(values.get(val))
                    if v is not None:
                        return [v]
        return []
    legacy = req.get("KeyConditions")
    if isinstance(legacy, dict) and isinstance(legacy.get(pk), dict):
        vals = legacy[pk].get("AttributeValueList") or []
        if vals:
            v = _attr_string(vals[0])
            return [v] if v is not None else []
    return []


TRANSACT_WRITE_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                          "ConditionCheck": "ConditionCheckItem"}


def dynamodb_checks(op: str, req: dict[str, Any], r: Resolver) -> list[Check]:
    if op in ("GetItem", "DeleteItem", "UpdateItem", "PutItem"):
        table = str(req.get("TableName", ""))
        attrs = req.get("Item") if op == "PutItem" else req.get("Key")
        return [Check(f"dynamodb:{op}", table_arn(r, table),
                      {"dynamodb:LeadingKeys": _item_leading(r, table, attrs)})]
    if op in ("Query", "Scan"):
        table = str(req.get("TableName", ""))
        index = req.get("IndexName") if isinstance(req.get("IndexName"), str) else None
        ctx: dict[str, list[str]] = {}
        if op == "Query":
            ctx["dynamodb:LeadingKeys"] = query_leading_keys(req, r.partition_key(table_name_of(table), index))
        return [Check(f"dynamodb:{op}", table_arn(r, table, index), ctx)]
    if op in ("BatchGetItem", "BatchWriteItem"):
        checks = []
        for table, spec in (req.get("RequestItems") or {}).items():
            keys: list[str] = []
            if op == "BatchGetItem":
                for k in (spec or {}).get("Keys") or []:
                    keys += _item_leading(r, table, k)
            else:
                for w in spec or []:
                    if "PutRequest" in w:
                        keys += _item_leading(r, table, w["PutRequest"].get("Item"))
                    elif "DeleteRequest" in w:
                        keys += _item_leading(r, table, w["DeleteRequest"].get("Key"))
            checks.append(Check(f"dynamodb:{op}", table_arn(r, table),
                                {"dynamodb:LeadingKeys": sorted(set(keys))}))
        return checks
    if op == "TransactGetItems":
        checks = []
        for item in req.get("TransactItems") or []:
            get = item.get("Get") or {}
            table = str(get.get("TableName", ""))
            checks.append(Check("dynamodb:GetItem", table_arn(r, table),
                                {"dynamodb:LeadingKeys": _item_leading(r, table, get.get("Key"))}))
        return checks
    if op == "TransactWriteItems":
        checks = []
        for item in req.get("TransactItems") or []:
            for kind, action in TRANSACT_WRITE_ACTIONS.items():
                if kind in item:
                    spec = item[kind] or {}
                    table = str(spec.get("TableName", ""))
                    attrs = spec.get("Item") if kind == "Put" else spec.get("Key")
                    checks.append(Check(f"dynamodb:{action}", table_arn(r, table),
                                        {"dynamodb:LeadingKeys": _item_leading(r, table, attrs)}))
        return checks
    table = req.get("TableName") or req.get("ResourceArn")
    resource = table_arn(r, table) if isinstance(table, str) and table else "*"
    return [Check(f"dynamodb:{op}", resource)]


SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
             "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def queue_arn(r: Resolver, url_or_name: str, owner: str | None = None) -> str:
    if url_or_name.startswith("arn:"):
        return url_or_name
    if "://" in url_or_name:
        parts = [p for p in url_or_name.split("://", 1)[1].split("/")[1:] if p]
        if len(parts) >= 2:
            return f"arn:aws:sqs:{r.region}:{parts[-2]}:{parts[-1]}"
        name = parts[-1] if parts else url_or_name
    else:
        name = url_or_name
    return f"arn:aws:sqs:{r.region}:{owner or r.account}:{name}"


def sqs_checks(op: str, req: dict[str, Any], r: Resolver) -> list[Check]:
    action = "sqs:" + SQS_BATCH.get(op, op)
    if isinstance(req.get("QueueUrl"), str):
        return [Check(action, queue_arn(r, req["QueueUrl"]))]
    if isinstance(req.get("QueueName"), str):
        owner = req.get("QueueOwnerAWSAccountId")
        return [Check(action, queue_arn(r, req["QueueName"], owner if isinstance(owner, str) else None))]
    return [Check(action, "*")]


def secretsmanager_checks(op: str, req: dict[str, Any], r: Resolver) -> list[Check]:
    action = f"secretsmanager:{op}"
    sid = req.get("SecretId")
    if not isinstance(sid, str) and op == "CreateSecret":
        sid = req.get("Name")
    if isinstance(sid, str) and sid:
        return [Check(action, r.secret_arn(sid))]
    return [Check(action, "*")]


SERVICE_OF_TARGET = (("DynamoDB_", "dynamodb"), ("AmazonSQS.", "sqs"), ("secretsmanager.", "secretsmanager"))


def request_checks(service: str, op: str, req: Any, r: Resolver) -> list[Check]:
    if not isinstance(req, dict):
        req = {}
    if service == "dynamodb":
        return dynamodb_checks(op, req, r)
    if service == "sqs":
        return sqs_checks(op, req, r)
    if service == "secretsmanager":
        return secretsmanager_checks(op, req, r)
    return [Check(f"{service}:{op}", "*")]


_SECRET_SUFFIX = re.compile(r"^(arn:aws:secretsmanager:[^:]*:[^:]*:secret:.+)-[A-Za-z0-9]{6}$")


def usage_resource(resource: str, prefix: str) -> str:
    """A resource as the usage record keeps it: the stack prefix as ``{prefix}`` and a secret
    ARN's random 6-character suffix as ``??????`` (so every stack's use adds up)."""
    if prefix:
        resource = resource.replace(prefix, "{prefix}")
    return _SECRET_SUFFIX.sub(r"\1-??????", resource)


def leading_key_prefix(value: str) -> str:
    """A partition key value up to and including its first '#' (the whole value if none)."""
    i = value.find("#")
    return value[: i + 1] if i >= 0 else value


# -- answers ------------------------------------------------------------------
def denial_message(principal_arn: str, check: Check, explicit: bool) -> str:
    why = ("with an explicit deny in an identity-based policy" if explicit else
           f"because no identity-based policy allows the {check.action} action")
    return (f"User: {principal_arn} is not authorized to perform: {check.action} "
            f"on resource: {check.resource} {why}")


Response = tuple[str, list[tuple[str, str]], bytes]


def access_denied(service: str, message: str) -> Response:
    """The service's AccessDeniedException as its JSON protocol answers it."""
    request_id = str(uuid.uuid4())
    if service == "sqs":
        body = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
        status = "403 Forbidden"
        extra = [("x-amzn-query-error", "AccessDenied;Sender")]
        ctype = "application/x-amz-json-1.0"
    elif service == "dynamodb":
        body = {"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message}
        status = "400 Bad Request"
        extra = []
        ctype = "application/x-amz-json-1.0"
    else:
        body = {"__type": "AccessDeniedException", "Message": message}
        status = "400 Bad Request"
        extra = []
        ctype = "application/x-amz-json-1.1"
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", ctype), ("x-amzn-ErrorType", "AccessDeniedException"),
               ("x-amzn-RequestId", request_id), *extra]
    if service == "dynamodb":
        headers.append(("x-amz-crc32", str(zlib.crc32(data) & 0xFFFFFFFF)))
    headers.append(("Content-Length", str(len(data))))
    return status, headers, data


# -- the registry ---------------------------------------------------------------
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


def access_key_of(authorization: str) -> str | None:
    m = _ACCESS_KEY.search(authorization or "")
    return m.group(1) if m else None


@dataclass
class Principal:
    access_key: str
    function: str
    prefix: str
    statements: list[Statement]
    mode: str | None  # overrides the registry's mode when set

    def arn_for(self, account: str) -> str:
        """The caller as AWS names it in an AccessDenied message (a Lambda role's session)."""
        return f"arn:aws:sts::{account}:assumed-role/{self.function}Role/{self.function}"

    def role_arn(self, account: str) -> str:
        return f"arn:aws:iam::{account}:role/{self.function}Role"


@dataclass
class Decision:
    allowed: bool           # what the client gets
    denied: list[tuple[Check, str]]  # checks IAM would refuse (also in record mode)
    message: str = ""


class IamRegistry:
    """Principals, their policies, the mode and the usage record (thread-safe)."""

    def __init__(self, mode: str = "enforce", log: Callable[[str], None] | None = None):
        if mode not in MODES:
            raise PolicyError(f"{MODE_ENV} must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.lock = threading.Lock()
        self.principals: dict[str, Principal] = {}
        self.usage: dict[str, dict[tuple[str, str, str, bool], int]] = defaultdict(lambda: defaultdict(int))
        self.denials = 0
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    # control API
    def register(self, body: Any) -> dict[str, Any]:
        """``{"principals": {"<akid>": {"function": F, "prefix": P, "statements": [...],
        "mode"?: M}}, "mode"?: M}`` -> what was registered. Raises PolicyError."""
        if not isinstance(body, dict):
            raise PolicyError("body must be an object")
        parsed: dict[str, Principal] = {}
        principals = body.get("principals", {})
        if not isinstance(principals, dict):
            raise PolicyError("principals must map access key ids to policies")
        for akid, spec in principals.items():
            if not isinstance(spec, dict):
                raise PolicyError(f"principal {akid}: expected an object")
            mode = spec.get("mode")
            if mode is not None and mode not in MODES:
                raise PolicyError(f"principal {akid}: mode must be one of {', '.join(MODES)}")
            try:
                statements = parse_policy(spec.get("statements"))
            except PolicyError as e:
                raise PolicyError(f"principal {akid} ({spec.get('function', '?')}): {e}") from None
            parsed[akid] = Principal(akid, str(spec.get("function") or akid), str(spec.get("prefix") or ""),
                                     statements, mode)
        mode = body.get("mode")
        if mode is not None and mode not in MODES:
            raise PolicyError(f"mode must be one of {', '.join(MODES)}")
        with self.lock:
            self.principals.update(parsed)
            if mode is not None:
                self.mode = mode
        return {"registered": sorted(parsed), "mode": self.mode}

    def describe(self, prefix: str | None = None) -> dict[str, Any]:
        with self.lock:
            return {"mode": self.mode, "principals": {
                k: {"function": p.function, "prefix": p.prefix, "statements": len(p.statements),
                    "mode": p.mode or self.mode}
                for k, p in self.principals.items() if prefix is None or p.prefix == prefix}}

    def usage_snapshot(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, list[dict[str, Any]]] = {}
            for function, entries in self.usage.items():
                out[function] = [
                    {"action": a, "resource": res, "leading_key": lk, "allowed": ok, "count": n}
                    for (a, res, lk, ok), n in sorted(entries.items())]
            return {"mode": self.mode, "denials": self.denials, "functions": out}

    def reset_usage(self) -> None:
        with self.lock:
            self.usage.clear()
            self.denials = 0

    # requests
    def principal(self, authorization: str) -> Principal | None:
        akid = access_key_of(authorization)
        if akid is None:
            return None
        with self.lock:
            return self.principals.get(akid)

    def authorize(self, p: Principal, service: str, op: str, req: Any, r: Resolver) -> Decision:
        mode = p.mode or self.mode
        if mode == "off":
            return Decision(True, [])
        checks = request_checks(service, op, req, r)
        denied: list[tuple[Check, str]] = []
        for c in checks:
            # the global keys AWS puts in every request context (the SDK talks https in AWS)
            c.context.setdefault("aws:SecureTransport", ["true"])
            c.context.setdefault("aws:RequestedRegion", [r.region])
            c.context.setdefault("aws:PrincipalAccount", [r.account])
            c.context.setdefault("aws:PrincipalArn", [p.role_arn(r.account)])
            outcome = evaluate(p.statements, c)
            ok = outcome == "allow"
            if not ok:
                denied.append((c, outcome))
            self._record(p, c, ok)
        if not denied:
            return Decision(True, [])
        check, outcome = denied[0]
        message = denial_message(p.arn_for(r.account), check, outcome == "deny")
        for c, outcome in denied:
            self.log(f"emulator: IAM {'DENIED' if mode == 'enforce' else 'would deny'} "
                     f"{p.function} ({p.access_key}) {c.action} on {c.resource}"
                     f" leading keys {c.leading_keys if c.leading_keys is not None else '-'}"
                     f"{' (explicit deny)' if outcome == 'deny' else ''}")
        return Decision(mode != "enforce", denied, message)

    def _record(self, p: Principal, c: Check, ok: bool) -> None:
        resource = usage_resource(c.resource, p.prefix)
        lks = c.leading_keys
        prefixes = sorted({leading_key_prefix(v) for v in lks}) if lks else ["-"]
        with self.lock:
            if not ok:
                self.denials += 1
            for lk in prefixes:
                self.usage[p.function][(c.action, resource, lk, ok)] += 1
