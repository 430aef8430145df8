"""Least privilege: every function's policy in template.yaml grants exactly its declared needs.

Declared needs live beside each function's code, in functions/<name>/Cargo.toml:

    [package.metadata.iam]
    # DynamoDB, per resource (the table, or its index gsi1 / gsi2): a list of grants, each the
    # actions allowed on the items whose partition key matches one of `keys` (IAM StringLike
    # patterns on dynamodb:LeadingKeys: "USER#*" is every key starting USER#, "KYC#REVIEW" is
    # that one partition). A Query on an index is checked against the index's partition key; a
    # TransactWriteItems is checked item by item as Put/Update/Delete/ConditionCheckItem.
    table = [
      { actions = ["GetItem", "PutItem", "UpdateItem"], keys = ["ACCOUNT#*", "TXN#*"] },
      { actions = ["DeleteItem"], keys = ["IDEMPOTENCY#*"] },
    ]
    gsi1 = [{ actions = ["Query"], keys = ["USER#*"] }]
    # A grant that cannot be limited to key prefixes says why instead of `keys`:
    #   { actions = ["Scan"], unrestricted = "why" }
    sqs = { SendMessage = ["PayoutsQueue"] }      # SQS action -> queue logical ids
    secrets = ["JwtSigningKeysSecret"]            # secretsmanager:GetSecretValue, logical ids
    websocket = true                              # execute-api:ManageConnections, POST only

The function's `Policies` in template.yaml is one policy document whose statements are exactly
what `expected_statements` renders from that table (the order does not matter). The test fails
when, in template.yaml:

- a function has no [package.metadata.iam] (every function declares its needs, even none);
- a function's Policies use a SAM policy template (`DynamoDBCrudPolicy`, `SQSPollerPolicy`, any
  *Crud*/*Full* one) or a managed policy: only explicit statements can be checked;
- an action or a resource is a wildcard (`*`, `dynamodb:*`; the one resource pattern allowed is
  the WebSocket API's `POST/@connections/*`, connection ids being made at run time);
- a statement grants an action on a resource, or with a condition, beyond the declared needs,
  or a declared need is not granted (a missing permission is an outage);
- an internet-facing function (an HttpApi route, a Function URL, a WebSocket route) has a
  DynamoDB statement without a dynamodb:LeadingKeys condition and no declared reason.

Not in Policies, so not checked here: what SAM attaches itself, AWSLambdaBasicExecutionRole
(logs), AWSXrayWriteOnlyAccess (Tracing: Active) and, for a function with an SQS event source,
AWSLambdaSQSQueueExecutionRole (the poller's receive/delete/attributes, written by AWS on `*`).
The checks run on the project's files and, to show they catch what they should, on copies
broken in each way.

Run: python -m unittest discover -s tools/lint -p 'test_*.py'
Print or rewrite the Policies blocks from the declared needs:
    python tools/lint/test_template_iam.py --render http_auth_login
    python tools/lint/test_template_iam.py --write      # rewrites only the Policies blocks
"""

import copy
import json
import re
import sys
import tomllib
import unittest
from pathlib import Path

from test_template_alarms import load  # CloudFormation's short tags read as their long forms

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ROOT / "functions"

FUNCTION_TYPE = "AWS::Serverless::Function"
TABLE = "PurseTable"
INDEXES = ("gsi1", "gsi2")
DYNAMODB_ACTIONS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem", "Query", "Scan"}
SQS_ACTIONS = {"SendMessage", "GetQueueAttributes", "ChangeMessageVisibility", "ReceiveMessage", "DeleteMessage"}
CONNECTIONS_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${Stage}/POST/@connections/*"
VERSION = "2012-10-17"


# ------------------------------------------------------------------------------------------------
# Declared needs
# ------------------------------------------------------------------------------------------------


def read_needs(functions_dir=FUNCTIONS):
    """{binary name: its [package.metadata.iam] table, or None when it declares none}."""
    needs = {}
    for manifest in sorted(functions_dir.glob("*/Cargo.toml")):
        with manifest.open("rb") as f:
            package = tomllib.load(f).get("package", {})
        needs[package.get("name", manifest.parent.name)] = package.get("metadata", {}).get("iam")
    return needs


def _resource(kind, name=None):
    """The template form of a resource the needs name."""
    if kind == "table":
        return {"Fn::GetAtt": [TABLE, "Arn"]}
    if kind in INDEXES:
        return {"Fn::Sub": "${%s.Arn}/index/%s" % (TABLE, kind)}
    if kind == "queue":
        return {"Fn::GetAtt": [name, "Arn"]}
    if kind == "secret":
        return {"Ref": name}
    if kind == "connections":
        return {"Fn::Sub": CONNECTIONS_ARN}
    raise ValueError(kind)


def expected_statements(needs):
    """The policy statements that grant exactly `needs` (a [package.metadata.iam] table)."""
    statements = []
    for kind in ("table", *INDEXES):
        for grant in needs.get(kind, []):
            statement = {
                "Effect": "Allow",
                "Action": ["dynamodb:" + a for a in grant["actions"]],
                "Resource": _resource(kind),
            }
            if "keys" in grant:
                statement["Condition"] = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(grant["keys"])}}
            statements.append(statement)
    for action, queues in needs.get("sqs", {}).items():
        statements.append(
            {"Effect": "Allow", "Action": "sqs:" + action, "Resource": [_resource("queue", q) for q in queues]}
        )
    if needs.get("secrets"):
        statements.append(
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": [_resource("secret", s) for s in needs["secrets"]],
            }
        )
    if needs.get("websocket"):
        statements.append(
            {"Effect": "Allow", "Action": "execute-api:ManageConnections", "Resource": _resource("connections")}
        )
    return statements


def needs_problems(name, needs):
    """What is malformed in one function's declared needs."""
    if needs is None:
        return [f"{name}: no [package.metadata.iam] in functions/{name}/Cargo.toml"]
    problems = []
    known = {"table", *INDEXES, "sqs", "secrets", "websocket"}
    for key in needs:
        if key not in known:
            problems.append(f"{name}: unknown need {key!r}")
    for kind in ("table", *INDEXES):
        for grant in needs.get(kind, []):
            bad = [a for a in grant.get("actions", []) if a not in DYNAMODB_ACTIONS]
            if bad or not grant.get("actions"):
                problems.append(f"{name}: {kind} actions {grant.get('actions')} (known: {sorted(DYNAMODB_ACTIONS)})")
            if ("keys" in grant) == ("unrestricted" in grant):
                problems.append(f"{name}: each {kind} grant has `keys` or (with its reason) `unrestricted`")
            for k in grant.get("keys", []):
                if not k or k == "*" or k.startswith("*"):
                    problems.append(f"{name}: {kind} key pattern {k!r} does not narrow anything")
    for action in needs.get("sqs", {}):
        if action not in SQS_ACTIONS:
            problems.append(f"{name}: sqs action {action!r}")
    return problems


# ------------------------------------------------------------------------------------------------
# What the template grants
# ------------------------------------------------------------------------------------------------


def functions_of(template):
    """{binary name: (logical id, resource)} of every function in the template."""
    found = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary", logical_id)
        found[binary] = (logical_id, resource)
    return found


def internet_facing(template):
    """Logical ids of the functions anyone on the internet can invoke."""
    exposed = set()
    resources = template.get("Resources") or {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        props = resource.get("Properties") or {}
        if props.get("FunctionUrlConfig"):
            exposed.add(logical_id)
        for event in (props.get("Events") or {}).values():
            if event.get("Type") in ("HttpApi", "Api"):
                exposed.add(logical_id)
    # WebSocket routes: an ApiGatewayV2 integration whose IntegrationUri names the function.
    for resource in resources.values():
        if resource.get("Type") == "AWS::ApiGatewayV2::Integration":
            text = json.dumps((resource.get("Properties") or {}).get("IntegrationUri"))
            exposed.update(re.findall(r"\$\{(\w+)\.Arn\}", text))
            exposed.update(re.findall(r'"Fn::GetAtt": \["(\w+)", "Arn"\]', text))
    return exposed


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _key(value):
    return json.dumps(value, sort_keys=True)


def atoms(statements):
    """Each statement split into (effect, action, resource, condition) atoms, comparable as a set."""
    out = set()
    for st in statements:
        condition = st.get("Condition")
        if condition is not None:
            condition = copy.deepcopy(condition)
            for values in condition.values():
                for k, v in list(values.items()):
                    values[k] = sorted(_as_list(v))
        for action in _as_list(st.get("Action")):
            for resource in _as_list(st.get("Resource")):
                out.add((st.get("Effect"), str(action), _key(resource), _key(condition)))
    return out


def policy_problems(name, logical_id, props, needs, exposed):
    """What is wrong with one function's Policies, given its declared needs."""
    problems = []
    policies = props.get("Policies")
    if props.get("Role"):
        return [f"{logical_id}: has a Role of its own; declare Policies so they can be checked"]
    statements = []
    for policy in _as_list(policies or []):
        if isinstance(policy, dict) and set(policy) <= {"Version", "Statement"} and "Statement" in policy:
            statements.extend(_as_list(policy["Statement"]))
        elif isinstance(policy, dict):
            problems.append(f"{logical_id}: SAM policy template {sorted(policy)} (write explicit statements)")
        else:
            problems.append(f"{logical_id}: managed policy {policy!r} (write explicit statements)")
    for st in statements:
        for key in ("NotAction", "NotResource"):
            if key in st:
                problems.append(f"{logical_id}: {key} is not allowed")
        for action in _as_list(st.get("Action")):
            if not isinstance(action, str) or "*" in action or "?" in action:
                problems.append(f"{logical_id}: wildcard action {action!r}")
        for resource in _as_list(st.get("Resource")):
            text = resource if isinstance(resource, str) else json.dumps(resource)
            if "*" in text and resource != _resource("connections"):
                problems.append(f"{logical_id}: wildcard resource {text}")
        resources = [_key(r) for r in _as_list(st.get("Resource"))]
        on_table = any(TABLE in r for r in resources)
        leading = ((st.get("Condition") or {}).get("ForAllValues:StringLike") or {}).get("dynamodb:LeadingKeys")
        if on_table and logical_id in exposed and not leading and st.get("Effect") == "Allow":
            excused = {  # the (action, resource) pairs of grants declared unrestricted, with a reason
                ("dynamodb:" + a, _key(_resource(k)))
                for k in ("table", *INDEXES)
                for g in (needs or {}).get(k, [])
                if g.get("unrestricted")
                for a in g["actions"]
            }
            pairs = {(a, r) for a in _as_list(st.get("Action")) for r in resources}
            if not pairs <= excused:
                problems.append(
                    f"{logical_id}: internet-facing, but a table statement has no dynamodb:LeadingKeys "
                    f"condition ({st.get('Action')}) and no declared reason"
                )
    if needs is None:
        return problems
    granted, wanted = atoms(statements), atoms(expected_statements(needs))
    for effect, action, resource, condition in sorted(granted - wanted):
        problems.append(
            f"{logical_id}: grants {effect} {action} on {resource} with {condition}, beyond functions/{name}/Cargo.toml"
        )
    for effect, action, resource, condition in sorted(wanted - granted):
        problems.append(f"{logical_id}: does not grant the declared {action} on {resource} with {condition}")
    return problems


def problems(template, needs):
    """Every least-privilege problem of `template` against `needs` ({binary: needs or None})."""
    found = []
    exposed = internet_facing(template)
    functions = functions_of(template)
    for name, (logical_id, resource) in sorted(functions.items()):
        own = needs.get(name)
        found.extend(needs_problems(name, own))
        found.extend(policy_problems(name, logical_id, resource.get("Properties") or {}, own, exposed))
    return found


# ------------------------------------------------------------------------------------------------
# Rendering the Policies blocks (for --render / --write)
# ------------------------------------------------------------------------------------------------


def _yaml_value(value):
    if isinstance(value, dict) and "Ref" in value:
        return "!Ref " + value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "!GetAtt " + ".".join(value["Fn::GetAtt"])
    if isinstance(value, dict) and "Fn::Sub" in value:
        return "!Sub " + json.dumps(value["Fn::Sub"])
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) if isinstance(v, str) else _yaml_value(v) for v in value) + "]"
    return value if re.fullmatch(r"[A-Za-z0-9:_.-]+", value) else json.dumps(value)


def render_policies(needs, indent=6):
    """The `Policies:` block (YAML text) granting exactly `needs`."""
    pad = " " * indent
    lines = [f"{pad}Policies:", f'{pad}  - Version: "{VERSION}"', f"{pad}    Statement:"]
    for st in expected_statements(needs):
        lines.append(f"{pad}      - Effect: {st['Effect']}")
        lines.append(f"{pad}        Action: {_yaml_value(st['Action'])}")
        lines.append(f"{pad}        Resource: {_yaml_value(st['Resource'])}")
        if "Condition" in st:
            keys = st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            lines.append(f"{pad}        Condition:")
            lines.append(f"{pad}          ForAllValues:StringLike:")
            lines.append(f"{pad}            dynamodb:LeadingKeys: [{', '.join(json.dumps(k) for k in keys)}]")
    return "\n".join(lines) + "\n"


def rewrite_template(text, needs):
    """template.yaml's text with every function's Policies block rendered from its needs."""
    template = load(text)
    lines = text.splitlines(keepends=True)
    for name, (logical_id, _) in functions_of(template).items():
        if needs.get(name) is None:
            continue
        start = next(i for i, line in enumerate(lines) if line.rstrip() == f"  {logical_id}:")
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"  \S", lines[i])), len(lines))
        at = next((i for i in range(start, end) if lines[i].rstrip() == "      Policies:"), None)
        if at is None:
            raise SystemExit(f"{logical_id}: no `      Policies:` line to replace")
        stop = next(i for i in range(at + 1, end + 1) if i == end or re.match(r" {0,6}\S", lines[i]))
        while stop > at + 1 and not lines[stop - 1].strip():
            stop -= 1
        lines[at:stop] = [render_policies(needs[name])]
    return "".join(lines)


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


class ProjectPolicies(unittest.TestCase):
    """The project's template and declared needs."""

    @classmethod
    def setUpClass(cls):
        cls.template = load(TEMPLATE.read_text())
        cls.needs = read_needs()

    def test_every_function_declares_its_needs_and_is_granted_exactly_them(self):
        self.assertEqual([], problems(self.template, self.needs))

    def test_every_function_crate_is_a_function_of_the_template(self):
        self.assertEqual(sorted(self.needs), sorted(functions_of(self.template)))

    def test_internet_facing_functions_are_found(self):
        exposed = internet_facing(self.template)
        for logical_id in ("AuthLoginFunction", "RevioWebhookFunction", "TelephonyVoiceWebhookFunction",
                           "WsConnectFunction", "WsSignalFunction"):
            self.assertIn(logical_id, exposed)
        for logical_id in ("PayoutsConsumerFunction", "ReconcileDepositsFunction"):
            self.assertNotIn(logical_id, exposed)


NEEDS = {
    "api_fn": {
        "table": [{"actions": ["GetItem", "UpdateItem"], "keys": ["USER#*"]}],
        "gsi1": [{"actions": ["Query"], "keys": ["USER#*"]}],
        "sqs": {"SendMessage": ["WorkQueue"]},
        "secrets": ["JwtSigningKeysSecret"],
    },
    "worker_fn": {"table": [{"actions": ["Scan"], "unrestricted": "operator audit reads every item"}]},
}


def _function(binary, policies, events=None):
    props = {"CodeUri": ".", "Policies": policies}
    if events:
        props["Events"] = events
    return {
        "Type": FUNCTION_TYPE,
        "Metadata": {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": binary}},
        "Properties": props,
    }


def small_template():
    """Two functions whose policies grant exactly NEEDS: one behind the HTTP API, one internal."""
    return {
        "Resources": {
            "ApiFunction": _function(
                "api_fn",
                [{"Version": VERSION, "Statement": expected_statements(NEEDS["api_fn"])}],
                {"Api": {"Type": "HttpApi", "Properties": {"Method": "GET", "Path": "/x"}}},
            ),
            "WorkerFunction": _function(
                "worker_fn", [{"Version": VERSION, "Statement": expected_statements(NEEDS["worker_fn"])}]
            ),
        }
    }


class TheCheckerCatches(unittest.TestCase):
    """The checks, on a small template that passes and on copies broken one way each."""

    def assertCaught(self, template, needle, needs=None):
        found = problems(template, needs if needs is not None else NEEDS)
        self.assertTrue(any(needle in p for p in found), f"{needle!r} not in {found}")

    def statements(self, template, logical_id="ApiFunction"):
        return template["Resources"][logical_id]["Properties"]["Policies"][0]["Statement"]

    def test_the_small_template_passes(self):
        self.assertEqual([], problems(small_template(), NEEDS))

    def test_a_sam_crud_policy(self):
        t = small_template()
        t["Resources"]["WorkerFunction"]["Properties"]["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": TABLE}}}
        )
        self.assertCaught(t, "SAM policy template ['DynamoDBCrudPolicy']")

    def test_a_managed_policy(self):
        t = small_template()
        t["Resources"]["WorkerFunction"]["Properties"]["Policies"].append("AmazonDynamoDBFullAccess")
        self.assertCaught(t, "managed policy 'AmazonDynamoDBFullAccess'")

    def test_an_action_beyond_the_needs(self):
        t = small_template()
        self.statements(t)[0]["Action"].append("dynamodb:DeleteItem")
        self.assertCaught(t, "grants Allow dynamodb:DeleteItem")

    def test_a_broadened_key_prefix(self):
        t = small_template()
        self.statements(t)[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("SESSION#*")
        self.assertCaught(t, "beyond functions/api_fn/Cargo.toml")

    def test_an_index_the_function_does_not_query(self):
        t = small_template()
        self.statements(t)[1]["Resource"] = {"Fn::Sub": "${PurseTable.Arn}/index/gsi2"}
        self.assertCaught(t, "gsi2")

    def test_an_undeclared_queue_or_secret(self):
        t = small_template()
        self.statements(t)[2]["Resource"].append({"Fn::GetAtt": ["OtherQueue", "Arn"]})
        self.statements(t)[3]["Resource"].append({"Ref": "PiiKeysSecret"})
        found = problems(t, NEEDS)
        self.assertTrue(any("OtherQueue" in p and "beyond" in p for p in found), found)
        self.assertTrue(any("PiiKeysSecret" in p and "beyond" in p for p in found), found)

    def test_wildcards(self):
        t = small_template()
        self.statements(t).append({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"})
        self.assertCaught(t, "wildcard action 'dynamodb:*'")
        self.assertCaught(t, "wildcard resource *")

    def test_an_internet_facing_table_statement_without_leading_keys(self):
        t = small_template()
        del self.statements(t)[0]["Condition"]
        self.assertCaught(t, "internet-facing, but a table statement has no dynamodb:LeadingKeys")

    def test_a_reason_excuses_only_its_own_grant(self):
        needs = copy.deepcopy(NEEDS)
        needs["api_fn"]["table"].append({"actions": ["Scan"], "unrestricted": "a reason"})
        t = small_template()
        t["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"] = expected_statements(needs["api_fn"])
        self.assertEqual([], problems(t, needs))
        del self.statements(t)[0]["Condition"]
        self.assertCaught(t, "internet-facing, but a table statement has no dynamodb:LeadingKeys", needs)

    def test_an_internal_function_may_go_unrestricted_with_a_reason(self):
        # WorkerFunction's Scan has no condition and says why: no problem.
        self.assertFalse(any("WorkerFunction" in p for p in problems(small_template(), NEEDS)))

    def test_a_function_without_declared_needs(self):
        self.assertCaught(small_template(), "worker_fn: no [package.metadata.iam]", {**NEEDS, "worker_fn": None})

    def test_a_declared_need_that_is_not_granted(self):
        t = small_template()
        del self.statements(t)[3]
        self.assertCaught(t, "does not grant the declared secretsmanager:GetSecretValue")

    def test_the_rendered_block_reads_back_as_the_needs(self):
        block = render_policies(NEEDS["api_fn"], indent=0)
        self.assertEqual(atoms(load(block)["Policies"][0]["Statement"]), atoms(expected_statements(NEEDS["api_fn"])))


def _main(argv):
    needs = read_needs()
    if argv[:1] == ["--render"] and len(argv) == 2:
        sys.stdout.write(render_policies(needs[argv[1]]))
    elif argv == ["--write"]:
        TEMPLATE.write_text(rewrite_template(TEMPLATE.read_text(), needs))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("--") and sys.argv[1] not in ("--verbose",):
        _main(sys.argv[1:])
    else:
        unittest.main()
