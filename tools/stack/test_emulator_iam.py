"""IAM enforcement of tools/stack/emulator.py (iam_policy.py): the evaluator, the request ->
action mapping, and the emulator refusing a registered principal what its policy does not
allow, through boto3.

    .venv/bin/python -m unittest tools/stack/test_emulator_iam.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
import urllib.request
import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam_policy  # noqa: E402
from emulator_testing import NO_RETRIES, start_emulator, stop_emulator, wait_ready  # noqa: E402
from iam_policy import Check, PolicyError, evaluate, parse_policy, request_checks  # noqa: E402

REGION, ACCOUNT = "us-east-1", "123456789012"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/p-PurseTable"


class FakeResolver:
    region = REGION
    account = ACCOUNT

    def partition_key(self, table: str, index: str | None) -> str | None:
        if table != "p-PurseTable":
            return None
        return {None: "pk", "gsi1": "gsi1pk"}.get(index)

    def secret_arn(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return secret_id
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret_id}-AbCdEf"


R = FakeResolver()


def leading_keys_policy(*patterns: str, actions: Any = "dynamodb:*", qualifier: str = "ForAllValues:StringLike"):
    return parse_policy([{"Effect": "Allow", "Action": actions, "Resource": [TABLE_ARN, TABLE_ARN + "/index/*"],
                          "Condition": {qualifier: {"dynamodb:LeadingKeys": list(patterns)}}}])


class EvaluatorTest(unittest.TestCase):
    def test_actions_match_case_insensitively_with_wildcards(self) -> None:
        policy = parse_policy([{"Effect": "Allow", "Action": ["DynamoDB:get*", "sqs:SendMessage?"],
                                "Resource": "*"}])
        self.assertEqual(evaluate(policy, Check("dynamodb:GetItem", TABLE_ARN)), "allow")
        self.assertEqual(evaluate(policy, Check("dynamodb:PutItem", TABLE_ARN)), "implicit")
        self.assertEqual(evaluate(policy, Check("sqs:SendMessage", "q")), "implicit", "? is exactly one character")

    def test_resources_match_as_case_sensitive_globs(self) -> None:
        policy = parse_policy([{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": TABLE_ARN + "/index/*"}])
        self.assertEqual(evaluate(policy, Check("dynamodb:Query", TABLE_ARN + "/index/gsi1")), "allow")
        self.assertEqual(evaluate(policy, Check("dynamodb:Query", TABLE_ARN)), "implicit",
                         "the index pattern does not grant the table")
        self.assertEqual(evaluate(policy, Check("dynamodb:Query", TABLE_ARN.upper() + "/index/gsi1")), "implicit")

    def test_an_explicit_deny_wins_over_any_allow(self) -> None:
        policy = parse_policy([
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE_ARN},
        ])
        self.assertEqual(evaluate(policy, Check("dynamodb:DeleteItem", TABLE_ARN)), "deny")
        self.assertEqual(evaluate(policy, Check("dynamodb:PutItem", TABLE_ARN)), "allow")

    def test_not_action_and_not_resource_invert_the_match(self) -> None:
        policy = parse_policy([{"Effect": "Allow", "NotAction": "dynamodb:Delete*", "NotResource": "arn:other"}])
        self.assertEqual(evaluate(policy, Check("dynamodb:PutItem", TABLE_ARN)), "allow")
        self.assertEqual(evaluate(policy, Check("dynamodb:DeleteItem", TABLE_ARN)), "implicit")
        self.assertEqual(evaluate(policy, Check("dynamodb:PutItem", "arn:other")), "implicit")

    def test_for_all_values_string_like_allows_only_matching_leading_keys(self) -> None:
        policy = leading_keys_policy("USER#*", "EMAIL#*")
        ok = Check("dynamodb:PutItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["USER#1"]})
        bad = Check("dynamodb:PutItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["WALLET#1"]})
        mixed = Check("dynamodb:BatchGetItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["USER#1", "WALLET#1"]})
        self.assertEqual(evaluate(policy, ok), "allow")
        self.assertEqual(evaluate(policy, bad), "implicit")
        self.assertEqual(evaluate(policy, mixed), "implicit", "every value must match")

    def test_for_all_values_over_a_missing_key_is_true_as_in_aws(self) -> None:
        # A Scan carries no dynamodb:LeadingKeys: ForAllValues is vacuously true, so such a
        # policy does not stop a Scan (AWS's documented pitfall; a Null condition would).
        policy = leading_keys_policy("USER#*")
        self.assertEqual(evaluate(policy, Check("dynamodb:Scan", TABLE_ARN)), "allow")
        self.assertEqual(evaluate(policy, Check("dynamodb:Scan", TABLE_ARN, {"dynamodb:LeadingKeys": []})), "allow")
        guarded = parse_policy([{"Effect": "Allow", "Action": "dynamodb:*", "Resource": TABLE_ARN, "Condition": {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["USER#*"]},
            "Null": {"dynamodb:LeadingKeys": "false"}}}])
        self.assertEqual(evaluate(guarded, Check("dynamodb:Scan", TABLE_ARN)), "implicit")

    def test_for_any_value_and_single_valued_operators_need_the_key(self) -> None:
        self.assertEqual(evaluate(leading_keys_policy("USER#*", qualifier="ForAnyValue:StringLike"),
                                  Check("dynamodb:Scan", TABLE_ARN)), "implicit")
        single = leading_keys_policy("USER#1", qualifier="StringEquals")
        self.assertEqual(evaluate(single, Check("dynamodb:GetItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["USER#1"]})),
                         "allow")
        self.assertEqual(evaluate(single, Check("dynamodb:Scan", TABLE_ARN)), "implicit")
        if_exists = leading_keys_policy("USER#1", qualifier="StringEqualsIfExists")
        self.assertEqual(evaluate(if_exists, Check("dynamodb:Scan", TABLE_ARN)), "allow")

    def test_for_all_values_string_equals_compares_exactly(self) -> None:
        policy = leading_keys_policy("CONFIG", qualifier="ForAllValues:StringEquals")
        self.assertEqual(evaluate(policy, Check("dynamodb:GetItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["CONFIG"]})),
                         "allow")
        self.assertEqual(evaluate(policy, Check("dynamodb:GetItem", TABLE_ARN, {"dynamodb:LeadingKeys": ["CONFIG#x"]})),
                         "implicit")

    def test_policies_the_evaluator_cannot_evaluate_faithfully_are_refused(self) -> None:
        bad = [
            [{"Effect": "Allow", "Action": "x:*", "Resource": "*", "Condition": {"NumericLessThan": {"k": "1"}}}],
            [{"Effect": "Allow", "Action": "x:*", "Resource": "${Unresolved.Arn}"}],
            [{"Effect": "Allow", "Action": "x:*"}],
            [{"Effect": "Permit", "Action": "x:*", "Resource": "*"}],
            [{"Effect": "Allow", "Action": "x:*", "Resource": "*", "Principal": "*"}],
            [{"Effect": "Allow", "Action": "x:*", "Resource": "*",
              "Condition": {"StringLike": {"dynamodb:LeadingKeys": "${aws:userid}"}}}],
        ]
        for policy in bad:
            with self.subTest(policy=policy), self.assertRaises(PolicyError):
                parse_policy(policy)


def one(checks: list[Check]) -> Check:
    assert len(checks) == 1, checks
    return checks[0]


class RequestChecksTest(unittest.TestCase):
    def test_item_operations_name_the_table_and_the_items_partition_key(self) -> None:
        c = one(request_checks("dynamodb", "PutItem", {"TableName": "p-PurseTable",
                                                       "Item": {"pk": {"S": "USER#1"}, "sk": {"S": "A"}}}, R))
        self.assertEqual((c.action, c.resource, c.leading_keys), ("dynamodb:PutItem", TABLE_ARN, ["USER#1"]))
        c = one(request_checks("dynamodb", "GetItem", {"TableName": "p-PurseTable", "Key": {"pk": {"S": "W#2"}}}, R))
        self.assertEqual((c.action, c.leading_keys), ("dynamodb:GetItem", ["W#2"]))

    def test_a_query_on_an_index_checks_the_index_arn_and_the_index_partition_key(self) -> None:
        req = {"TableName": "p-PurseTable", "IndexName": "gsi1",
               "KeyConditionExpression": "#k = :v AND begins_with(gsi1sk, :p)",
               "ExpressionAttributeNames": {"#k": "gsi1pk"},
               "ExpressionAttributeValues": {":v": {"S": "EMAIL#a@b"}, ":p": {"S": "x"}}}
        c = one(request_checks("dynamodb", "Query", req, R))
        self.assertEqual((c.resource, c.leading_keys), (TABLE_ARN + "/index/gsi1", ["EMAIL#a@b"]))
        table = one(request_checks("dynamodb", "Query", {
            "TableName": "p-PurseTable", "KeyConditionExpression": ":v = pk",
            "ExpressionAttributeValues": {":v": {"S": "USER#1"}}}, R))
        self.assertEqual((table.resource, table.leading_keys), (TABLE_ARN, ["USER#1"]))

    def test_a_scan_carries_no_leading_keys(self) -> None:
        c = one(request_checks("dynamodb", "Scan", {"TableName": "p-PurseTable"}, R))
        self.assertEqual((c.action, c.leading_keys), ("dynamodb:Scan", None))

    def test_transact_write_items_is_checked_item_by_item_with_each_items_action(self) -> None:
        req = {"TransactItems": [
            {"Put": {"TableName": "p-PurseTable", "Item": {"pk": {"S": "A#1"}}}},
            {"Update": {"TableName": "p-PurseTable", "Key": {"pk": {"S": "B#1"}}}},
            {"Delete": {"TableName": "p-PurseTable", "Key": {"pk": {"S": "C#1"}}}},
            {"ConditionCheck": {"TableName": "p-PurseTable", "Key": {"pk": {"S": "D#1"}}}},
        ]}
        got = [(c.action, c.leading_keys) for c in request_checks("dynamodb", "TransactWriteItems", req, R)]
        self.assertEqual(got, [("dynamodb:PutItem", ["A#1"]), ("dynamodb:UpdateItem", ["B#1"]),
                               ("dynamodb:DeleteItem", ["C#1"]), ("dynamodb:ConditionCheckItem", ["D#1"])])

    def test_transact_get_items_is_get_item_per_item_and_batches_are_per_table(self) -> None:
        got = request_checks("dynamodb", "TransactGetItems", {"TransactItems": [
            {"Get": {"TableName": "p-PurseTable", "Key": {"pk": {"S": "A#1"}}}}]}, R)
        self.assertEqual([(c.action, c.leading_keys) for c in got], [("dynamodb:GetItem", ["A#1"])])
        c = one(request_checks("dynamodb", "BatchGetItem", {"RequestItems": {"p-PurseTable": {
            "Keys": [{"pk": {"S": "B#2"}}, {"pk": {"S": "A#1"}}]}}}, R))
        self.assertEqual((c.action, c.resource, c.leading_keys), ("dynamodb:BatchGetItem", TABLE_ARN, ["A#1", "B#2"]))
        c = one(request_checks("dynamodb", "BatchWriteItem", {"RequestItems": {"p-PurseTable": [
            {"PutRequest": {"Item": {"pk": {"S": "A#1"}}}}, {"DeleteRequest": {"Key": {"pk": {"S": "C#1"}}}}]}}, R))
        self.assertEqual((c.action, c.leading_keys), ("dynamodb:BatchWriteItem", ["A#1", "C#1"]))

    def test_sqs_operations_name_the_queue_arn_and_batches_their_single_action(self) -> None:
        url = "http://127.0.0.1:4566/123456789012/p-PayoutsQueue"
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:p-PayoutsQueue"
        for op, action in [("SendMessage", "sqs:SendMessage"), ("SendMessageBatch", "sqs:SendMessage"),
                           ("DeleteMessageBatch", "sqs:DeleteMessage"), ("ReceiveMessage", "sqs:ReceiveMessage"),
                           ("GetQueueAttributes", "sqs:GetQueueAttributes")]:
            c = one(request_checks("sqs", op, {"QueueUrl": url}, R))
            self.assertEqual((c.action, c.resource), (action, arn))
        c = one(request_checks("sqs", "GetQueueUrl", {"QueueName": "p-PayoutsQueue"}, R))
        self.assertEqual((c.action, c.resource), ("sqs:GetQueueUrl", arn))

    def test_secrets_are_checked_on_their_full_arn(self) -> None:
        c = one(request_checks("secretsmanager", "GetSecretValue", {"SecretId": "p-Jwt"}, R))
        self.assertEqual((c.action, c.resource), ("secretsmanager:GetSecretValue",
                                                  f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:p-Jwt-AbCdEf"))

    def test_the_usage_record_adds_up_every_stacks_use_of_a_resource(self) -> None:
        self.assertEqual(iam_policy.usage_resource(TABLE_ARN, "p-"),
                         f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{{prefix}}PurseTable")
        self.assertEqual(iam_policy.usage_resource(
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:p-JwtSecret-AbCdEf", "p-"),
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{{prefix}}JwtSecret-??????")

    def test_the_leading_key_prefix_is_the_value_up_to_its_first_hash(self) -> None:
        self.assertEqual(iam_policy.leading_key_prefix("USER#01H#x"), "USER#")
        self.assertEqual(iam_policy.leading_key_prefix("CONFIG"), "CONFIG")


class RegistryTest(unittest.TestCase):
    def registry(self, mode: str = "enforce") -> tuple[iam_policy.IamRegistry, list[str]]:
        lines: list[str] = []
        reg = iam_policy.IamRegistry(mode, log=lines.append)
        reg.register({"principals": {"fn-p-F": {"function": "F", "prefix": "p-", "statements": [
            {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE_ARN}]}}})
        return reg, lines

    def test_a_denial_names_principal_action_resource_and_is_logged_and_counted(self) -> None:
        reg, lines = self.registry()
        p = reg.principal("AWS4-HMAC-SHA256 Credential=fn-p-F/20260101/us-east-1/dynamodb/aws4_request, X")
        assert p is not None
        d = reg.authorize(p, "dynamodb", "PutItem", {"TableName": "p-PurseTable", "Item": {"pk": {"S": "U#1"}}}, R)
        self.assertFalse(d.allowed)
        self.assertEqual(d.message, f"User: arn:aws:sts::{ACCOUNT}:assumed-role/FRole/F is not authorized to perform: "
                                    f"dynamodb:PutItem on resource: {TABLE_ARN} because no identity-based policy "
                                    "allows the dynamodb:PutItem action")
        self.assertIn("DENIED F (fn-p-F) dynamodb:PutItem", lines[0])
        self.assertIn("U#1", lines[0])
        usage = reg.usage_snapshot()["functions"]["F"]
        self.assertEqual(usage, [{"action": "dynamodb:PutItem", "resource": "arn:aws:dynamodb:us-east-1:"
                                  "123456789012:table/{prefix}PurseTable", "leading_key": "U#",
                                  "allowed": False, "count": 1}])

    def test_record_mode_allows_but_still_logs_and_counts_the_denial(self) -> None:
        reg, lines = self.registry("record")
        p = reg.principals["fn-p-F"]
        d = reg.authorize(p, "dynamodb", "PutItem", {"TableName": "p-PurseTable"}, R)
        self.assertTrue(d.allowed)
        self.assertEqual(len(d.denied), 1)
        self.assertIn("would deny", lines[0])
        self.assertEqual(reg.usage_snapshot()["denials"], 1)

    def test_unknown_principals_are_not_governed(self) -> None:
        reg, _ = self.registry()
        self.assertIsNone(reg.principal("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request"))
        self.assertIsNone(reg.principal(""))

    def test_a_bad_policy_is_refused_naming_the_function(self) -> None:
        reg, _ = self.registry()
        with self.assertRaisesRegex(PolicyError, r"fn-p-G \(G\)"):
            reg.register({"principals": {"fn-p-G": {"function": "G", "statements": [{"Effect": "Allow"}]}}})


def _post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class EmulatorIamTest(unittest.TestCase):
    proc: subprocess.Popen[str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.proc, port = start_emulator({"PURSE_IAM": "enforce"})
        wait_ready(cls.proc, port)
        cls.url = f"http://127.0.0.1:{port}"

    @classmethod
    def tearDownClass(cls) -> None:
        stop_emulator(cls.proc)

    def client(self, service: str, key: str) -> Any:
        session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key="testing",
                                        region_name=REGION)
        return session.client(service, endpoint_url=self.url, config=NO_RETRIES)

    def test_a_registered_principal_gets_exactly_what_its_policy_allows(self) -> None:
        prefix = f"i{uuid.uuid4().hex[:8]}-"
        table = f"{prefix}T"
        admin_ddb = self.client("dynamodb", "testing")
        admin_ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        queue_url = self.client("sqs", "testing").create_queue(QueueName=f"{prefix}Q")["QueueUrl"]
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        status, answer = _post(self.url + "/_emulator/iam", {"principals": {f"fn-{prefix}F": {
            "function": "F", "prefix": prefix, "statements": [
                {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": arn,
                 "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["USER#*"]}}}]}}})
        self.assertEqual((status, answer["registered"]), (200, [f"fn-{prefix}F"]))

        ddb = self.client("dynamodb", f"fn-{prefix}F")
        ddb.put_item(TableName=table, Item={"pk": {"S": "USER#1"}})
        self.assertIn("Item", ddb.get_item(TableName=table, Key={"pk": {"S": "USER#1"}}))
        with self.assertRaises(ClientError) as denied:
            ddb.put_item(TableName=table, Item={"pk": {"S": "WALLET#1"}})
        err = denied.exception.response
        self.assertEqual(err["Error"]["Code"], "AccessDeniedException")
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertIn("is not authorized to perform: dynamodb:PutItem on resource: " + arn, err["Error"]["Message"])
        with self.assertRaises(ClientError) as denied:
            ddb.delete_item(TableName=table, Key={"pk": {"S": "USER#1"}})
        self.assertEqual(denied.exception.response["Error"]["Code"], "AccessDeniedException")
        self.assertEqual(len(admin_ddb.scan(TableName=table)["Items"]), 1, "nothing denied was applied")

        with self.assertRaises(ClientError) as denied:
            self.client("sqs", f"fn-{prefix}F").send_message(QueueUrl=queue_url, MessageBody="x")
        self.assertEqual(denied.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertIn("AccessDenied", denied.exception.response["Error"]["Code"])

        usage = json.loads(urllib.request.urlopen(self.url + "/_emulator/iam/usage").read())["functions"]["F"]
        seen = {(u["action"], u["leading_key"], u["allowed"]) for u in usage}
        self.assertLessEqual({("dynamodb:PutItem", "USER#", True), ("dynamodb:PutItem", "WALLET#", False),
                              ("sqs:SendMessage", "-", False)}, seen)
        described = json.loads(urllib.request.urlopen(f"{self.url}/_emulator/iam?prefix={prefix}").read())
        self.assertEqual(described["principals"][f"fn-{prefix}F"]["statements"], 1)

    def test_a_policy_the_evaluator_cannot_evaluate_is_refused_with_400(self) -> None:
        status, answer = _post(self.url + "/_emulator/iam", {"principals": {"fn-x": {"function": "X", "statements": [
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {"k": "v"}}}]}}})
        self.assertEqual(status, 400)
        self.assertIn("DateLessThan", answer["error"])


if __name__ == "__main__":
    unittest.main()
