"""DynamoDB consumed capacity in the stats of tools/stack/emulator.py.

Starts the emulator as a subprocess on a free port and talks to it through boto3
(retries disabled), resetting the stats before each test; the item size rules are
also tested directly (module loaded from its path).

    .venv/bin/python -m unittest tools/stack/test_emulator_capacity.py
"""

from __future__ import annotations

import io
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

emulator = load_emulator_module("purse_stack_emulator_capacity")


def s(text: str) -> dict[str, str]:
    return {"S": text}


def padded(pk: str, total: int, **extra: Any) -> dict[str, Any]:
    """An item {"pk": pk, **extra, "d": "xxx..."} of exactly ``total`` bytes by DynamoDB's rules."""
    item = {"pk": s(pk), **extra}
    fill = total - emulator.item_size(item) - 1  # 1: the name "d"
    assert fill >= 0
    item["d"] = s("x" * fill)
    assert emulator.item_size(item) == total
    return item


class ItemSizeTest(unittest.TestCase):
    """emulator.item_size and friends, without a server."""

    def test_scalars(self) -> None:
        size = emulator.item_size
        self.assertEqual(size({"ab": s("héllo")}), 2 + 6)  # UTF-8 bytes, é is 2
        self.assertEqual(size({"é": s("")}), 2)
        self.assertEqual(size({"b": {"BOOL": True}, "n": {"NULL": True}}), 2 + 2)
        self.assertEqual(size({"b": {"B": "AAECAwQ="}}), 1 + 5)  # base64 of 5 raw bytes
        self.assertEqual(size({"b": {"B": b"\x00\x01\x02"}}), 1 + 3)

    def test_numbers(self) -> None:
        n = emulator.number_size
        self.assertEqual(n("0"), 1)
        self.assertEqual(n("7"), 2)
        self.assertEqual(n("12"), 2)
        self.assertEqual(n("123"), 3)
        self.assertEqual(n("1000"), 2)       # trailing zeros trimmed: 1 significant digit
        self.assertEqual(n("0.0012"), 2)     # leading zeros trimmed
        self.assertEqual(n("12345.6789"), 6)  # 9 significant digits -> 5 + 1
        self.assertEqual(n("-12"), 3)        # negative: one more byte
        self.assertEqual(n("1.5E+3"), 2)
        self.assertEqual(emulator.item_size({"amount": {"N": "1999"}}), 6 + 3)

    def test_collections(self) -> None:
        size = emulator.item_size
        self.assertEqual(size({"l": {"L": []}}), 1 + 3)
        self.assertEqual(size({"m": {"M": {}}}), 1 + 3)
        # 3 + per element 1 byte + the element (+ its name in a map)
        self.assertEqual(size({"l": {"L": [s("ab"), {"N": "12"}]}}), 1 + 3 + (1 + 2) + (1 + 2))
        self.assertEqual(size({"m": {"M": {"k": s("ab"), "kk": {"BOOL": False}}}}),
                         1 + 3 + (1 + 1 + 2) + (1 + 2 + 1))
        self.assertEqual(size({"m": {"M": {"in": {"L": [s("a")]}}}}), 1 + 3 + (1 + 2 + (3 + 1 + 1)))
        self.assertEqual(size({"ss": {"SS": ["a", "bc"]}, "ns": {"NS": ["1", "123"]}, "bs": {"BS": ["AA=="]}}),
                         2 + 3 + 2 + (2 + 3) + 2 + 1)

    def test_units_and_kinds(self) -> None:
        self.assertEqual([emulator.write_units(n) for n in (0, 1, 1024, 1025, 2048, 2049)], [1, 1, 1, 2, 2, 3])
        self.assertEqual([emulator.read_units(n) for n in (0, 4096, 4097, 5000)], [1, 1, 2, 2])

        class Table:
            hash_key_attr = "pk"
        self.assertEqual(emulator.item_kind(Table, {"pk": s("USER#1#x"), "entity": s("user")}), "user")
        self.assertEqual(emulator.item_kind(Table, {"pk": s("USER#1#x")}), "USER")
        self.assertEqual(emulator.item_kind(Table, {"pk": s("plain")}), "plain")

    def test_region_from_authorization(self) -> None:
        auth = ("AWS4-HMAC-SHA256 Credential=testing/20260101/eu-west-3/dynamodb/aws4_request, "
                "SignedHeaders=host, Signature=abc")
        self.assertEqual(emulator.request_region({"HTTP_AUTHORIZATION": auth}), "eu-west-3")
        self.assertEqual(emulator.request_region({}), os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))

    def test_a_failing_computation_counts_the_request_and_answers_normally(self) -> None:
        answer = json.dumps({"ConsumedCapacity": None}).encode()

        def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
            return [answer]

        app = emulator.SerialisingMiddleware(moto)
        original = emulator.CapacityProbe.finish
        emulator.CapacityProbe.finish = lambda self, *a, **k: 1 / 0  # type: ignore[method-assign]
        try:
            body = json.dumps({"TableName": "nope", "Item": {"pk": s("a")}}).encode()
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "CONTENT_LENGTH": str(len(body)),
                       "wsgi.input": io.BytesIO(body), "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.PutItem"}
            got: list[str] = []
            out = b"".join(app(environ, lambda status, headers, exc_info=None: got.append(status)))
        finally:
            emulator.CapacityProbe.finish = original  # type: ignore[method-assign]
        self.assertEqual((got, out), (["200 OK"], answer))
        cap = app._snapshot()["capacity"]["dynamodb"]
        self.assertEqual(cap["failures"], {"PutItem": 1})
        self.assertEqual(cap["by_operation"]["PutItem"]["requests"], 1)
        self.assertEqual(cap["write_units"], 0.0)
        self.assertIn("ZeroDivisionError", cap["last_failure"])


class EmulatorCapacityTest(unittest.TestCase):
    proc: subprocess.Popen[str]
    port: int

    @classmethod
    def setUpClass(cls) -> None:
        cls.proc, cls.port = start_emulator()
        wait_ready(cls.proc, cls.port)
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name="us-east-1")
        cls.ddb = session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{cls.port}", config=NO_RETRIES)

    @classmethod
    def tearDownClass(cls) -> None:
        stop_emulator(cls.proc)

    # -- helpers -------------------------------------------------------------
    def setUp(self) -> None:
        self.prefix = f"c{uuid.uuid4().hex[:12]}-"
        self.control("POST", "/_emulator/faults", {"spec": "off", "scope": self.prefix})

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()!r}") from None

    def reset(self) -> None:
        self.assertEqual(self.control("POST", "/_emulator/stats/reset"), {"reset": True})

    def capacity(self) -> dict[str, Any]:
        return self.control("GET", "/_emulator/stats")["capacity"]["dynamodb"]

    def units(self) -> tuple[float, float]:
        """(write units, read units) since the last reset."""
        cap = self.capacity()
        return cap["write_units"], cap["read_units"]

    def table(self, range_key: bool = False, gsi: bool = False) -> str:
        name = self.prefix + uuid.uuid4().hex[:6]
        attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        extra: dict[str, Any] = {}
        if range_key:
            attrs.append({"AttributeName": "sk", "AttributeType": "S"})
            keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        if gsi:
            attrs.append({"AttributeName": "gsi1pk", "AttributeType": "S"})
            extra["GlobalSecondaryIndexes"] = [{
                "IndexName": "gsi1", "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"}}]
        self.ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=attrs,
                              KeySchema=keys, **extra)
        return name

    def error_code(self, call: Any, **kwargs: Any) -> str:
        with self.assertRaises(ClientError) as cm:
            call(**kwargs)
        return cm.exception.response["Error"]["Code"]

    # -- writes ------------------------------------------------------------------
    def test_put_item_costs_one_unit_per_started_kb(self) -> None:
        t = self.table()
        self.reset()
        self.ddb.put_item(TableName=t, Item=padded("ITEM#1", 1500))
        self.assertEqual(self.units(), (2.0, 0.0))
        cap = self.capacity()
        self.assertEqual(cap["by_operation"], {"PutItem": {"write_units": 2.0, "read_units": 0.0,
                                                           "index_write_units": 0.0, "requests": 1}})
        self.assertEqual(cap["largest_item_bytes"], {"ITEM": 1500})
        self.assertEqual(cap["failures"], {})
        self.ddb.put_item(TableName=t, Item=padded("ITEM#2", 1024))  # exactly 1 KB: 1 unit
        self.ddb.put_item(TableName=t, Item=padded("ITEM#3", 1025))  # 1 KB + 1 byte: 2 units
        self.assertEqual(self.units(), (5.0, 0.0))
        # overwriting a big item with a small one costs the larger of the two
        self.ddb.put_item(TableName=t, Item={"pk": s("ITEM#1")})
        self.assertEqual(self.units(), (7.0, 0.0))
        self.assertEqual(self.capacity()["largest_item_bytes"], {"ITEM": 1500})

    def test_update_growing_across_a_kb_costs_the_larger_size(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("ACCT#1", 1000, entity=s("account")))
        self.reset()
        key = {"pk": s("ACCT#1")}
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="SET note = :n",
                             ExpressionAttributeValues={":n": s("y" * 96)})  # +100 bytes -> 1100
        self.assertEqual(self.units(), (2.0, 0.0))
        self.assertEqual(self.capacity()["largest_item_bytes"], {"account": 1100})
        # shrinking back under 1 KB still costs the size before
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="REMOVE note")
        self.assertEqual(self.units(), (4.0, 0.0))
        self.ddb.update_item(TableName=t, Key=key, UpdateExpression="SET n = :one",
                             ExpressionAttributeValues={":one": {"N": "1"}})
        self.assertEqual(self.units(), (5.0, 0.0))
        self.assertEqual(self.capacity()["by_operation"]["UpdateItem"]["requests"], 3)

    def test_delete_costs_the_deleted_item(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("ITEM#1", 2500))
        self.reset()
        self.ddb.delete_item(TableName=t, Key={"pk": s("ITEM#1")})
        self.assertEqual(self.units(), (3.0, 0.0))
        self.ddb.delete_item(TableName=t, Key={"pk": s("ITEM#1")})  # nothing there: 1 unit
        self.assertEqual(self.units(), (4.0, 0.0))

    def test_transaction_costs_two_units_per_item_kb(self) -> None:
        t = self.table()
        self.reset()
        self.ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": {"pk": s(f"TX#{i}"), "n": {"N": "1"}}}} for i in range(3)])
        self.assertEqual(self.units(), (6.0, 0.0))
        self.assertEqual(self.capacity()["by_operation"]["TransactWriteItems"],
                         {"write_units": 6.0, "read_units": 0.0, "index_write_units": 0.0, "requests": 1})
        # Update of a 1.5 KB item, ConditionCheck of a 2.5 KB item, Delete of an absent item
        self.ddb.put_item(TableName=t, Item=padded("BIG#1", 1500))
        self.ddb.put_item(TableName=t, Item=padded("BIG#2", 2500))
        self.reset()
        self.ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": t, "Key": {"pk": s("BIG#1")}, "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "5"}}}},
            {"ConditionCheck": {"TableName": t, "Key": {"pk": s("BIG#2")},
                                "ConditionExpression": "attribute_exists(pk)"}},
            {"Delete": {"TableName": t, "Key": {"pk": s("GONE#1")}}},
        ])
        self.assertEqual(self.units(), (2 * 2 + 2 * 3 + 2 * 1, 0.0))

    def test_failed_conditions_are_still_charged(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("ITEM#1", 1500))
        self.ddb.put_item(TableName=t, Item=padded("ITEM#3", 3000))
        self.reset()
        # an existing 1.5 KB item: a failed put of a small item costs the item as it stands
        code = self.error_code(self.ddb.put_item, TableName=t, Item={"pk": s("ITEM#1")},
                               ConditionExpression="attribute_not_exists(pk)")
        self.assertEqual(code, "ConditionalCheckFailedException")
        self.assertEqual(self.units(), (2.0, 0.0))
        # no item: 1 unit
        self.error_code(self.ddb.put_item, TableName=t, Item=padded("ITEM#2", 1500),
                        ConditionExpression="attribute_exists(pk)")
        self.assertEqual(self.units(), (3.0, 0.0))
        # failed update and delete of a 3 KB item
        self.error_code(self.ddb.update_item, TableName=t, Key={"pk": s("ITEM#3")},
                        UpdateExpression="SET n = :n", ConditionExpression="attribute_not_exists(pk)",
                        ExpressionAttributeValues={":n": {"N": "1"}})
        self.error_code(self.ddb.delete_item, TableName=t, Key={"pk": s("ITEM#3")},
                        ConditionExpression="attribute_not_exists(pk)")
        self.assertEqual(self.units(), (9.0, 0.0))
        # a transaction cancelled by a condition: 2 x each item
        code = self.error_code(self.ddb.transact_write_items, TransactItems=[
            {"Put": {"TableName": t, "Item": {"pk": s("NEW#1")}}},
            {"Put": {"TableName": t, "Item": {"pk": s("ITEM#1")}, "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
        self.assertEqual(code, "TransactionCanceledException")
        self.assertEqual(self.units(), (9.0 + 2 * 1 + 2 * 2, 0.0))
        self.assertEqual(self.ddb.get_item(TableName=t, Key={"pk": s("NEW#1")}).get("Item"), None)
        # errors that are not failed conditions cost nothing (but are counted)
        self.reset()
        self.error_code(self.ddb.put_item, TableName=self.prefix + "missing", Item={"pk": s("x")})
        self.assertEqual(self.units(), (0.0, 0.0))
        self.assertEqual(self.capacity()["by_operation"]["PutItem"]["requests"], 1)

    def test_batch_write_rounds_each_item(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("OLD#1", 2100))
        self.reset()
        self.ddb.batch_write_item(RequestItems={t: [
            {"PutRequest": {"Item": padded("B#1", 500)}},
            {"PutRequest": {"Item": padded("B#2", 3500)}},
            {"DeleteRequest": {"Key": {"pk": s("OLD#1")}}},
        ]})
        self.assertEqual(self.units(), (1.0 + 4.0 + 3.0, 0.0))

    # -- reads -------------------------------------------------------------------
    def test_get_item_consistent_and_eventual(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("DOC#1", 5 * 1024))
        self.reset()
        self.ddb.get_item(TableName=t, Key={"pk": s("DOC#1")}, ConsistentRead=True)
        self.assertEqual(self.units(), (0.0, 2.0))
        self.ddb.get_item(TableName=t, Key={"pk": s("DOC#1")})
        self.assertEqual(self.units(), (0.0, 3.0))
        # a projection does not change the size read
        self.ddb.get_item(TableName=t, Key={"pk": s("DOC#1")}, ProjectionExpression="pk")
        self.assertEqual(self.units(), (0.0, 4.0))
        # absent items cost the minimum
        self.ddb.get_item(TableName=t, Key={"pk": s("NONE")}, ConsistentRead=True)
        self.ddb.get_item(TableName=t, Key={"pk": s("NONE")})
        self.assertEqual(self.units(), (0.0, 5.5))
        self.assertEqual(self.capacity()["by_operation"]["GetItem"]["requests"], 5)
        self.assertEqual(self.capacity()["largest_item_bytes"], {"DOC": 5 * 1024})

    def test_query_sums_the_items_read_before_filters(self) -> None:
        t = self.table(range_key=True)
        for i in range(3):
            self.ddb.put_item(TableName=t, Item=padded("USER#1", 1500, sk=s(f"MOVE#{i}"), entity=s("movement")))
        self.ddb.put_item(TableName=t, Item=padded("USER#2", 1500, sk=s("MOVE#0")))
        self.reset()
        query = {"TableName": t, "KeyConditionExpression": "pk = :pk",
                 "ExpressionAttributeValues": {":pk": s("USER#1")}}
        got = self.ddb.query(**query, ConsistentRead=True)
        self.assertEqual(got["Count"], 3)
        self.assertEqual(self.units(), (0.0, 2.0))  # 4,500 bytes -> 8 KB -> 2
        self.ddb.query(**query)
        self.assertEqual(self.units(), (0.0, 3.0))
        # a filter that keeps nothing, a projection, Select=COUNT: the same items are read
        got = self.ddb.query(**{**query, "ExpressionAttributeValues": {":pk": s("USER#1"), ":no": s("x")}},
                             FilterExpression="d = :no", ConsistentRead=True)
        self.assertEqual((got["Count"], got["ScannedCount"]), (0, 3))
        got = self.ddb.query(**query, ProjectionExpression="sk", ConsistentRead=True)
        self.assertEqual(got["Items"][0], {"sk": s("MOVE#0")})
        self.ddb.query(**query, Select="COUNT", ConsistentRead=True)
        self.assertEqual(self.units(), (0.0, 9.0))
        # Limit: only the items read; an empty result costs the minimum
        self.ddb.query(**query, Limit=2, ConsistentRead=True)  # 3,000 bytes -> 1
        self.ddb.query(**{**query, "ExpressionAttributeValues": {":pk": s("NOBODY")}})
        self.assertEqual(self.units(), (0.0, 10.5))
        cap = self.capacity()
        self.assertEqual(cap["by_operation"]["Query"]["requests"], 7)
        self.assertEqual(cap["largest_item_bytes"], {"movement": 1500})
        # Scan: every item evaluated (4 x 1,500 -> 2 units, eventually consistent 1)
        self.reset()
        got = self.ddb.scan(TableName=t, FilterExpression="pk = :x", ExpressionAttributeValues={":x": s("no")})
        self.assertEqual(got["Count"], 0)
        self.assertEqual(self.units(), (0.0, 1.0))

    def test_gsi_query_reads_index_entries_and_writes_count_index_units(self) -> None:
        t = self.table(gsi=True)
        self.reset()
        self.ddb.put_item(TableName=t, Item=padded("A#1", 1500, gsi1pk=s("G")))  # in the index
        self.ddb.put_item(TableName=t, Item=padded("A#2", 500))                  # sparse: not indexed
        cap = self.capacity()
        self.assertEqual((cap["write_units"], cap["index_write_units"]), (3.0, 2.0))
        # a projected attribute changes: 1 index write; the index key changes: delete + put
        self.ddb.update_item(TableName=t, Key={"pk": s("A#1")}, UpdateExpression="SET n = :n",
                             ExpressionAttributeValues={":n": {"N": "1"}})
        self.ddb.update_item(TableName=t, Key={"pk": s("A#1")}, UpdateExpression="SET gsi1pk = :g",
                             ExpressionAttributeValues={":g": s("H")})
        cap = self.capacity()
        self.assertEqual((cap["write_units"], cap["index_write_units"]), (7.0, 2.0 + 2.0 + 4.0))
        self.reset()
        got = self.ddb.query(TableName=t, IndexName="gsi1", KeyConditionExpression="gsi1pk = :g",
                             ExpressionAttributeValues={":g": s("H")})
        self.assertEqual(got["Count"], 1)
        self.assertEqual(self.units(), (0.0, 0.5))
        self.ddb.delete_item(TableName=t, Key={"pk": s("A#1")})
        cap = self.capacity()
        self.assertEqual((cap["write_units"], cap["index_write_units"]), (2.0, 2.0))

    def test_batch_get_and_transact_get(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("R#1", 1500))
        self.ddb.put_item(TableName=t, Item=padded("R#2", 6500))
        self.reset()
        keys = [{"pk": s("R#1")}, {"pk": s("R#2")}, {"pk": s("R#3")}]
        self.ddb.batch_get_item(RequestItems={t: {"Keys": keys, "ConsistentRead": True}})
        self.assertEqual(self.units(), (0.0, 1.0 + 2.0 + 1.0))  # each item rounded to 4 KB
        self.reset()
        self.ddb.transact_get_items(TransactItems=[{"Get": {"TableName": t, "Key": k}} for k in keys[:2]])
        self.assertEqual(self.units(), (0.0, 2 * 1.0 + 2 * 2.0))

    # -- faults, tokens, reset -------------------------------------------------------
    def test_refused_requests_cost_nothing_lost_responses_cost(self) -> None:
        t = self.table()
        self.reset()
        for spec in ("internal=1", "throttle=1"):
            self.control("POST", "/_emulator/faults", {"spec": spec, "scope": self.prefix})
            self.error_code(self.ddb.put_item, TableName=t, Item=padded("F#1", 1500))
        self.assertEqual(self.units(), (0.0, 0.0))
        self.assertEqual(self.capacity()["by_operation"], {})
        self.control("POST", "/_emulator/faults", {"spec": "lost_response=1", "scope": self.prefix})
        self.assertEqual(self.error_code(self.ddb.put_item, TableName=t, Item=padded("F#1", 1500)),
                         "InternalServerError")
        self.control("POST", "/_emulator/faults", {"spec": "off", "scope": self.prefix})
        self.assertEqual(self.units(), (2.0, 0.0))

    def test_token_replay_reads_instead_of_writing(self) -> None:
        t = self.table()
        self.reset()
        request = {"TransactItems": [{"Put": {"TableName": t, "Item": padded("TOK#1", 1500)}}],
                   "ClientRequestToken": uuid.uuid4().hex}
        self.ddb.transact_write_items(**request)
        self.assertEqual(self.units(), (4.0, 0.0))
        self.ddb.transact_write_items(**request)  # replayed from the token cache
        self.assertEqual(self.units(), (4.0, 1.0))
        self.assertEqual(self.capacity()["by_operation"]["TransactWriteItems"]["requests"], 2)

    def test_reset_zeroes_capacity(self) -> None:
        t = self.table()
        self.ddb.put_item(TableName=t, Item=padded("Z#1", 1500))
        self.ddb.get_item(TableName=t, Key={"pk": s("Z#1")})
        cap = self.capacity()
        self.assertGreater(cap["write_units"], 0)
        self.assertTrue(cap["largest_item_bytes"])
        self.reset()
        stats = self.control("GET", "/_emulator/stats")
        self.assertEqual(stats["capacity"], {"dynamodb": {
            "read_units": 0.0, "write_units": 0.0, "index_write_units": 0.0, "by_operation": {},
            "largest_item_bytes": {}, "failures": {}, "last_failure": None}})
        self.assertEqual(stats["dynamodb"], {})


if __name__ == "__main__":
    unittest.main()
