"""Fault injection, ClientRequestToken idempotency and the UpdateExpression check
of tools/stack/emulator.py.

Starts the emulator as a subprocess on a free port and talks to it through boto3
with retries disabled, so every injected fault reaches the test as-is. The
UpdateExpression checker is also tested directly (module loaded from its path).

    .venv/bin/python -m unittest tools/stack/test_emulator_faults.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unittest
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulator_testing import (NO_RETRIES, load_emulator_module, start_emulator,  # noqa: E402
                              stop_emulator, wait_ready)

emulator = load_emulator_module()


class EmulatorFaultsTest(unittest.TestCase):
    proc: subprocess.Popen[str]
    port: int
    url: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.proc, cls.port = start_emulator()
        # a second emulator, with faults from the environment, and a third with a bad spec,
        # start in parallel with the first
        cls.env_proc, cls.env_port = start_emulator(
            {"PURSE_EMULATOR_FAULTS": "internal=0.5,throttle=0.25,seed=11"})
        cls.bad_proc, _ = start_emulator({"PURSE_EMULATOR_FAULTS": "internal=0.5,bogus=1"})
        wait_ready(cls.proc, cls.port)
        cls.url = f"http://127.0.0.1:{cls.port}"
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name="us-east-1")
        cls.ddb = session.client("dynamodb", endpoint_url=cls.url, config=NO_RETRIES)
        cls.sqs = session.client("sqs", endpoint_url=cls.url, config=NO_RETRIES)
        cls.sm = session.client("secretsmanager", endpoint_url=cls.url, config=NO_RETRIES)

    @classmethod
    def tearDownClass(cls) -> None:
        for p in (cls.proc, cls.env_proc, cls.bad_proc):
            stop_emulator(p)

    # -- helpers -------------------------------------------------------------
    def setUp(self) -> None:
        # every test its own scope = its own name prefix, like the Rust tests do
        self.scope = f"t{uuid.uuid4().hex[:12]}-"

    def control(self, method: str, query: str = "", body: Any = None, port: int | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port or self.port}/_emulator/faults{query}",
                                     data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def faults(self, spec: str, scope: str | None = None) -> dict[str, Any]:
        status, answer = self.control("POST", body={"spec": spec, "scope": self.scope if scope is None else scope})
        self.assertEqual(status, 200, answer)
        return answer

    def scope_stats(self, scope: str | None = None) -> dict[str, Any]:
        status, answer = self.control("GET", "?scope=" + (self.scope if scope is None else scope))
        self.assertEqual(status, 200)
        return answer

    def table(self, suffix: str = "accounts") -> str:
        name = self.scope + suffix
        self.ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        return name

    def items(self, table: str) -> dict[str, dict[str, Any]]:
        with_faults = self.scope_stats()["config"]
        self.assertIsNone(with_faults, "read back with the scope's faults off")
        return {i["pk"]["S"]: i for i in self.ddb.scan(TableName=table, ConsistentRead=True)["Items"]}

    def error(self, call: Any, *args: Any, **kwargs: Any) -> ClientError:
        with self.assertRaises(ClientError) as cm:
            call(*args, **kwargs)
        return cm.exception

    @staticmethod
    def put(table: str, pk: str, n: int = 1) -> dict[str, Any]:
        return {"Put": {"TableName": table, "Item": {"pk": {"S": pk}, "n": {"N": str(n)}}}}

    @staticmethod
    def add(table: str, pk: str, n: int = 1) -> dict[str, Any]:
        return {"Update": {"TableName": table, "Key": {"pk": {"S": pk}},
                           "UpdateExpression": "ADD n :d",
                           "ExpressionAttributeValues": {":d": {"N": str(n)}}}}

    # -- the fault kinds -------------------------------------------------------
    def test_conflict_cancels_with_transaction_conflict_and_applies_nothing(self) -> None:
        t = self.table()
        self.faults("conflict=1,seed=3")
        err = self.error(self.ddb.transact_write_items,
                         TransactItems=[self.put(t, "a"), self.put(t, "b"), self.put(t, "c")])
        self.assertEqual(err.response["Error"]["Code"], "TransactionCanceledException")
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(err.response["ResponseMetadata"]["HTTPHeaders"]["content-type"],
                         "application/x-amz-json-1.0")
        self.assertEqual(err.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"],
                         "TransactionCanceledException")
        reasons = err.response["CancellationReasons"]
        self.assertEqual(len(reasons), 3)
        self.assertEqual(sorted(r["Code"] for r in reasons), ["None", "None", "TransactionConflict"])
        conflict = next(r for r in reasons if r["Code"] == "TransactionConflict")
        self.assertEqual(conflict["Message"], "Transaction is ongoing for the item")
        self.assertIn("TransactionConflict", err.response["Error"]["Message"])
        # conflict applies to TransactWriteItems only: a PutItem goes through
        self.ddb.put_item(TableName=t, Item={"pk": {"S": "solo"}})
        self.faults("off")
        self.assertEqual(set(self.items(t)), {"solo"})
        stats = self.scope_stats()
        self.assertEqual(stats["injected"]["conflict"], 1)
        self.assertEqual(stats["by_operation"]["TransactWriteItems"]["conflict"], 1)

    def test_throttle_applies_nothing_and_uses_both_exceptions(self) -> None:
        t = self.table()
        self.faults("throttle=1,seed=5")
        codes = set()
        for i in range(12):
            err = self.error(self.ddb.put_item, TableName=t, Item={"pk": {"S": f"p{i}"}})
            self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 400)
            codes.add(err.response["Error"]["Code"])
        err = self.error(self.ddb.transact_write_items, TransactItems=[self.put(t, "tx")])
        codes.add(err.response["Error"]["Code"])
        self.assertEqual(codes, {"ThrottlingException", "ProvisionedThroughputExceededException"})
        self.faults("off")
        self.assertEqual(self.items(t), {})

    def test_internal_applies_nothing(self) -> None:
        t = self.table()
        self.faults("internal=1")
        err = self.error(self.ddb.put_item, TableName=t, Item={"pk": {"S": "a"}})
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.assertEqual(err.response["Error"]["Code"], "InternalServerError")
        err = self.error(self.ddb.transact_write_items, TransactItems=[self.put(t, "b")])
        self.assertEqual(err.response["Error"]["Code"], "InternalServerError")
        self.faults("off")
        self.assertEqual(self.items(t), {})

    def test_lost_response_applies_the_write_but_answers_500(self) -> None:
        t = self.table()
        self.faults("lost_response=1")
        err = self.error(self.ddb.put_item, TableName=t, Item={"pk": {"S": "a"}})
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.assertEqual(err.response["Error"]["Code"], "InternalServerError")
        err = self.error(self.ddb.transact_write_items, TransactItems=[self.add(t, "b", 5)])
        self.assertEqual(err.response["Error"]["Code"], "InternalServerError")
        self.faults("off")
        got = self.items(t)
        self.assertEqual(set(got), {"a", "b"})
        self.assertEqual(got["b"]["n"]["N"], "5")

    # -- determinism and scopes ------------------------------------------------
    def run_sequence(self, table: str) -> list[str]:
        outcomes = []
        for i in range(40):
            try:
                if i % 2:
                    self.ddb.transact_write_items(TransactItems=[self.add(table, f"k{i}"), self.add(table, "sum")])
                else:
                    self.ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}})
                outcomes.append("ok")
            except ClientError as e:
                reasons = e.response.get("CancellationReasons")
                outcomes.append(e.response["Error"]["Code"] +
                                (":" + ",".join(r["Code"] for r in reasons) if reasons else ""))
        return outcomes

    def test_same_seed_gives_same_fault_sequence(self) -> None:
        spec = "conflict=0.2,throttle=0.2,internal=0.1,lost_response=0.1,seed=42"
        t = self.table()
        self.faults(spec)
        first = self.run_sequence(t)
        self.faults(spec)  # re-seeds the scope
        second = self.run_sequence(t)
        self.assertEqual(first, second)
        # another scope with the same seed draws the same sequence too
        other = f"t{uuid.uuid4().hex[:12]}-"
        self.scope, mine = other, self.scope
        t2 = self.table()
        self.faults(spec)
        self.assertEqual(self.run_sequence(t2), first)
        self.faults("conflict=0.2,throttle=0.2,internal=0.1,lost_response=0.1,seed=43")
        self.assertNotEqual(self.run_sequence(t2), first)
        self.scope = mine
        self.assertGreaterEqual(len(set(first)), 4, first)  # ok, conflicts, throttles, 500s
        stats = self.scope_stats()
        self.assertEqual(stats["requests"], 80)
        self.assertEqual(stats["injected"]["conflict"], 2 * sum(o.startswith("TransactionCanceled") for o in first))
        self.assertEqual(stats["injected"]["internal"] + stats["injected"]["lost_response"],
                         2 * first.count("InternalServerError"))

    def test_scoped_faults_affect_only_their_scope(self) -> None:
        mine = self.table()
        other_scope = f"t{uuid.uuid4().hex[:12]}-"
        other = other_scope + "accounts"
        self.ddb.create_table(TableName=other, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
        answer = self.faults("internal=1,seed=1")
        self.assertEqual(answer, {"scope": self.scope, "config": {
            "conflict": 0.0, "throttle": 0.0, "internal": 1.0, "lost_response": 0.0, "seed": 1}})
        for i in range(5):
            self.ddb.put_item(TableName=other, Item={"pk": {"S": f"o{i}"}})
            self.error(self.ddb.put_item, TableName=mine, Item={"pk": {"S": f"m{i}"}})
        stats = self.scope_stats()
        self.assertEqual(stats["requests"], 5)
        self.assertEqual(stats["injected"], {"conflict": 0, "throttle": 0, "internal": 5, "lost_response": 0})
        self.assertEqual(stats["by_operation"], {"PutItem": {"conflict": 0, "throttle": 0, "internal": 5,
                                                             "lost_response": 0}})
        self.assertEqual(stats["token_replays"], 0)
        # the whole listing has this scope; an unknown scope answers zeros
        status, listing = self.control("GET")
        self.assertEqual(status, 200)
        self.assertEqual(listing["scopes"][self.scope], stats)
        self.assertIn("", listing["scopes"])
        self.assertEqual(self.scope_stats(other_scope),
                         {"config": None, "injected": {"conflict": 0, "throttle": 0, "internal": 0,
                                                       "lost_response": 0},
                          "by_operation": {}, "requests": 0, "token_replays": 0})
        # DELETE forgets the scope, counters included
        status, answer = self.control("DELETE", "?scope=" + self.scope)
        self.assertEqual((status, answer), (200, {"scope": self.scope, "deleted": True}))
        self.assertEqual(self.scope_stats()["requests"], 0)
        self.ddb.put_item(TableName=mine, Item={"pk": {"S": "after"}})
        self.assertEqual(len(self.ddb.scan(TableName=other)["Items"]), 5)

    def test_provisioning_is_never_faulted(self) -> None:
        self.faults("throttle=0.5,internal=0.5")
        t = self.table()
        self.ddb.describe_table(TableName=t)
        self.ddb.update_time_to_live(TableName=t, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
        self.ddb.list_tables()
        q = self.sqs.create_queue(QueueName=self.scope + "q")["QueueUrl"]
        self.assertEqual(self.sqs.get_queue_url(QueueName=self.scope + "q")["QueueUrl"], q)
        self.sqs.set_queue_attributes(QueueUrl=q, Attributes={"VisibilityTimeout": "5"})
        self.sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])
        self.sqs.list_queues(QueueNamePrefix=self.scope)
        self.sqs.receive_message(QueueUrl=q, WaitTimeSeconds=0)
        self.sm.create_secret(Name=self.scope + "secret", SecretString="s")
        self.sm.get_secret_value(SecretId=self.scope + "secret")
        stats = self.scope_stats()
        self.assertEqual(stats["requests"], 0)
        self.assertEqual(sum(stats["injected"].values()), 0)

    # -- ClientRequestToken ----------------------------------------------------
    def test_token_retry_after_lost_response_applies_once(self) -> None:
        t = self.table()
        token = uuid.uuid4().hex
        request = {"TransactItems": [self.add(t, "acct", 7), self.put(t, "ledger-1")], "ClientRequestToken": token}
        self.faults("lost_response=1")
        err = self.error(self.ddb.transact_write_items, **request)
        self.assertEqual(err.response["Error"]["Code"], "InternalServerError")
        self.faults("off")
        ok = self.ddb.transact_write_items(**request)  # the SDK's retry, same token
        self.assertEqual(ok["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.ddb.transact_write_items(**request)  # and once more
        got = self.items(t)
        self.assertEqual(got["acct"]["n"]["N"], "7")  # applied once, not 21
        self.assertEqual(self.scope_stats()["token_replays"], 2)

    def test_token_of_a_failed_call_runs_again(self) -> None:
        t = self.table()
        request = {"TransactItems": [self.add(t, "acct", 3)], "ClientRequestToken": uuid.uuid4().hex}
        self.faults("internal=1")
        self.error(self.ddb.transact_write_items, **request)
        self.faults("throttle=1")
        self.error(self.ddb.transact_write_items, **request)
        self.faults("conflict=1")
        self.error(self.ddb.transact_write_items, **request)
        self.faults("off")
        self.assertEqual(self.items(t), {})
        # a real cancellation by moto (condition failed) is not stored either
        cond = {"TransactItems": [{"Put": {**self.put(t, "c")["Put"],
                                           "ConditionExpression": "attribute_exists(pk)"}}],
                "ClientRequestToken": uuid.uuid4().hex}
        err = self.error(self.ddb.transact_write_items, **cond)
        self.assertEqual(err.response["CancellationReasons"][0]["Code"], "ConditionalCheckFailed")
        self.ddb.transact_write_items(**request)
        self.ddb.transact_write_items(**request)
        self.assertEqual(self.items(t)["acct"]["n"]["N"], "3")
        self.assertEqual(self.scope_stats()["token_replays"], 1)

    def test_same_token_different_body_is_a_mismatch(self) -> None:
        t = self.table()
        token = uuid.uuid4().hex
        self.ddb.transact_write_items(TransactItems=[self.add(t, "acct", 1)], ClientRequestToken=token)
        err = self.error(self.ddb.transact_write_items, TransactItems=[self.add(t, "acct", 2)],
                         ClientRequestToken=token)
        self.assertEqual(err.response["Error"]["Code"], "IdempotentParameterMismatchException")
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(self.items(t)["acct"]["n"]["N"], "1")

    # -- UpdateExpression: chained SET arithmetic (DynamoDB refuses it, moto not) ---
    def raw_ddb(self, op: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """One DynamoDB call without the SDK, to see the answer's exact JSON."""
        req = urllib.request.Request(self.url + "/", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/x-amz-json-1.0",
                                              "X-Amz-Target": "DynamoDB_20120810." + op})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, dict(r.headers), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read())

    def assert_chained_refused(self, err: ClientError, token: str, near: str) -> None:
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertEqual(err.response["Error"]["Code"], "ValidationException")
        self.assertEqual(err.response["Error"]["Message"],
                         f'Invalid UpdateExpression: Syntax error; token: "{token}", near: "{near}"')
        self.assertNotIn("CancellationReasons", err.response)

    def test_chained_set_arithmetic_is_refused_as_dynamodb_does(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item={"pk": {"S": "acct"}, "a": {"N": "10"}, "b": {"N": "10"}})
        values = {":x": {"N": "3"}, ":y": {"N": "5"}}
        err = self.error(self.ddb.update_item, TableName=t, Key={"pk": {"S": "acct"}},
                         UpdateExpression="SET a = a - :x + :y", ExpressionAttributeValues=values)
        self.assert_chained_refused(err, "+", ":x + :y")
        # the exact JSON and headers, as DynamoDB sends them
        status, headers, answer = self.raw_ddb("UpdateItem", {
            "TableName": t, "Key": {"pk": {"S": "acct"}},
            "UpdateExpression": "set #b = #b + :x - :y", "ExpressionAttributeNames": {"#b": "b"},
            "ExpressionAttributeValues": values})
        self.assertEqual(status, 400)
        self.assertEqual(answer, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
                                  "message": 'Invalid UpdateExpression: Syntax error; token: "-", '
                                             'near: ":x - :y"'})
        self.assertEqual(headers["Content-Type"], "application/x-amz-json-1.0")
        self.assertEqual(headers["x-amzn-ErrorType"], "ValidationException")
        self.assertEqual(self.items(t)["acct"]["a"]["N"], "10")  # nothing applied
        self.assertEqual(self.items(t)["acct"]["b"]["N"], "10")

    def test_single_operator_and_function_values_are_accepted(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item={"pk": {"S": "acct"}, "a": {"N": "10"}, "b": {"N": "10"},
                                             "l": {"L": [{"S": "x"}]}})
        key = {"pk": {"S": "acct"}}
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="SET a = a + :x, b = b - :y",
                             ExpressionAttributeValues={":x": {"N": "3"}, ":y": {"N": "4"}})
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="SET c = if_not_exists(c, :z) + :x",
                             ExpressionAttributeValues={":z": {"N": "100"}, ":x": {"N": "1"}})
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="SET l = list_append(l, :l)",
                             ExpressionAttributeValues={":l": {"L": [{"S": "y"}]}})
        got = self.items(t)["acct"]
        self.assertEqual((got["a"]["N"], got["b"]["N"], got["c"]["N"]), ("13", "6", "101"))
        self.assertEqual(got["l"]["L"], [{"S": "x"}, {"S": "y"}])

    def test_transaction_with_one_chained_update_is_refused_whole(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item={"pk": {"S": "acct"}, "a": {"N": "10"}})
        bad = {"Update": {"TableName": t, "Key": {"pk": {"S": "acct"}},
                          "UpdateExpression": "SET a = a - :x + :y",
                          "ExpressionAttributeValues": {":x": {"N": "3"}, ":y": {"N": "5"}}}}
        request = {"TransactItems": [self.put(t, "ledger-1"), self.add(t, "other", 2), bad],
                   "ClientRequestToken": uuid.uuid4().hex}
        # checked before faults: a ValidationException even with every request faulted, no draw
        self.faults("conflict=0.5,internal=0.5")
        err = self.error(self.ddb.transact_write_items, **request)
        self.assert_chained_refused(err, "+", ":x + :y")
        self.assertEqual(self.scope_stats()["requests"], 0)
        self.faults("off")
        err = self.error(self.ddb.transact_write_items, **request)  # same token: not stored
        self.assert_chained_refused(err, "+", ":x + :y")
        self.assertEqual(set(self.items(t)), {"acct"})  # nothing applied
        self.assertEqual(self.items(t)["acct"]["a"]["N"], "10")
        # the same transaction with a valid update goes through
        bad["Update"]["UpdateExpression"] = "SET a = a - :x"
        del bad["Update"]["ExpressionAttributeValues"][":y"]
        self.ddb.transact_write_items(TransactItems=request["TransactItems"])
        got = self.items(t)
        self.assertEqual(set(got), {"acct", "ledger-1", "other"})
        self.assertEqual(got["acct"]["a"]["N"], "7")

    # -- SQS ---------------------------------------------------------------------
    def test_sqs_lost_response_delivers_and_answers_500(self) -> None:
        q = self.sqs.create_queue(QueueName=self.scope + "q")["QueueUrl"]
        self.faults("lost_response=1")
        err = self.error(self.sqs.send_message, QueueUrl=q, MessageBody="hello")
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.assertEqual(err.response["Error"]["Code"], "InternalError")
        self.faults("internal=1")
        err = self.error(self.sqs.send_message, QueueUrl=q, MessageBody="never")
        self.assertEqual(err.response["Error"]["Code"], "InternalError")
        self.faults("throttle=0.5,conflict=0.5")  # do not apply to SQS
        self.sqs.send_message(QueueUrl=q, MessageBody="plain")
        self.faults("off")
        got = self.sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
        self.assertEqual(sorted(m["Body"] for m in got), ["hello", "plain"])
        stats = self.scope_stats()
        self.assertEqual(stats["by_operation"]["SendMessage"]["lost_response"], 1)
        self.assertEqual(stats["by_operation"]["SendMessage"]["internal"], 1)
        self.assertEqual(stats["requests"], 3)

    # -- control API and configuration -------------------------------------------
    def test_bad_specs_are_rejected(self) -> None:
        for spec in ("bogus=0.1", "internal=2", "internal=-0.1", "internal=x", "seed=1.5",
                     "internal", "internal=0.6,throttle=0.6", "internal=0.1,internal=0.2", "internal=nan"):
            status, answer = self.control("POST", body={"spec": spec, "scope": self.scope})
            self.assertEqual(status, 400, spec)
            self.assertIn("error", answer)
        self.assertEqual(self.control("POST", body={"scope": self.scope})[0], 400)
        self.assertIsNone(self.scope_stats()["config"])

    def test_faults_from_the_environment(self) -> None:
        wait_ready(self.env_proc, self.env_port)
        status, answer = self.control("GET", "?scope=", port=self.env_port)
        self.assertEqual(status, 200)
        self.assertEqual(answer["config"], {"conflict": 0.0, "throttle": 0.25, "internal": 0.5,
                                            "lost_response": 0.0, "seed": 11})
        # the global scope is cleared like any other
        status, answer = self.control("POST", body={"spec": "off"}, port=self.env_port)
        self.assertEqual((status, answer), (200, {"scope": "", "config": None}))
        out = stop_emulator(self.env_proc)
        self.assertIn("emulator: faults on (global scope, from PURSE_EMULATOR_FAULTS): "
                      "throttle=0.25,internal=0.5,seed=11", out)
        # a bad spec stops the emulator at start with a clear message
        self.assertEqual(self.bad_proc.wait(timeout=30), 2)
        self.assertIn("unknown fault 'bogus'", stop_emulator(self.bad_proc))


class ChainedSetArithmeticTest(unittest.TestCase):
    """emulator.chained_set_operator / invalid_update_expression, without a server."""

    def refused(self, expression: str) -> tuple[str, str] | None:
        return emulator.chained_set_operator(expression)

    def test_chained_operators_are_refused(self) -> None:
        self.assertEqual(self.refused("SET a = a - :x + :y"), ("+", ":x + :y"))
        self.assertEqual(self.refused("SET a=a-:x+:y"), ("+", ":x+:y"))
        self.assertEqual(self.refused("set a = :x + :y + :z"), ("+", ":y + :z"))
        self.assertEqual(self.refused("SET #a.b[0].c = #a.b[0].c - :x - :y"), ("-", ":x - :y"))
        self.assertEqual(self.refused("SET a = if_not_exists(a, :z) + :x - :y"), ("-", ":x - :y"))
        self.assertEqual(self.refused("SET a = :x - list_append(a, :l) + :y"), ("+", ") + :y"))
        self.assertEqual(self.refused("SET a = a + :x +"), ("+", ":x +"))
        # the second action of the clause, after REMOVE/ADD clauses, keywords in any case
        self.assertEqual(self.refused("REMOVE r ADD n :d Set b = :b, a = a + :x - :y DELETE s :s"),
                         ("-", ":x - :y"))
        self.assertEqual(self.refused("SET a = a + :x, b = b - :x + :y"), ("+", ":x + :y"))

    def test_one_operator_per_value_and_functions_are_accepted(self) -> None:
        for expression in (
            "SET a = a + :x, b = b - :y",
            "SET a = if_not_exists(a, :z) + :x",
            "SET a = list_append(a, :l)",
            "SET a = list_append(if_not_exists(a, :e), :l), b = if_not_exists(b, :z) - :x",
            "SET #a.b[0].c = #a.b[1].c + :x, d[2] = :v",
            "SET a = :v",
            "SET a = a + :x REMOVE b, c ADD n :d, m :e DELETE s :s",
            "ADD n :d SET a = a - :x",
            "REMOVE a, b",
            "ADD n :d",
            "",
            "SET a = (a + :x",  # unbalanced: left to moto
        ):
            self.assertIsNone(self.refused(expression), expression)

    def test_request_shapes(self) -> None:
        message = 'Invalid UpdateExpression: Syntax error; token: "+", near: ":x + :y"'
        bad, good = "SET a = a - :x + :y", "SET a = a - :x"
        self.assertEqual(emulator.invalid_update_expression("UpdateItem", {"UpdateExpression": bad}), message)
        self.assertIsNone(emulator.invalid_update_expression("UpdateItem", {"UpdateExpression": good}))
        self.assertIsNone(emulator.invalid_update_expression("UpdateItem", {"AttributeUpdates": {}}))
        items = [{"Put": {"Item": {}}}, {"ConditionCheck": {"ConditionExpression": "a = a + :x + :y"}},
                 {"Update": {"UpdateExpression": good}}]
        self.assertIsNone(emulator.invalid_update_expression("TransactWriteItems", {"TransactItems": items}))
        items.append({"Update": {"UpdateExpression": bad}})
        self.assertEqual(emulator.invalid_update_expression("TransactWriteItems", {"TransactItems": items}),
                         message)
        self.assertIsNone(emulator.invalid_update_expression("PutItem", {"UpdateExpression": bad}))
        for junk in (None, [], {"TransactItems": "x"}, {"TransactItems": [1, {"Update": 2}]},
                     {"UpdateExpression": 5}):
            self.assertIsNone(emulator.invalid_update_expression("TransactWriteItems", junk))
            self.assertIsNone(emulator.invalid_update_expression("UpdateItem", junk))


if __name__ == "__main__":
    unittest.main()
