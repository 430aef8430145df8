"""The payout API of the Revio sandbox, tools/sandbox/revio.py.

Starts the sandbox as a subprocess on a free port with short payout delays, plus
a small in-process HTTP receiver for its webhooks, and checks the payout API
(auth, validation, idempotency by reference, the magic accounts, lookup by
reference), the signed webhooks, the faults (payout_timeout_after_accept,
lose_webhooks, duplicate_webhooks, down, ...), the control API (settle, deliver,
reset), that purchases still work beside payouts, and that the full account
number never leaves the request: not in an answer, a webhook nor the log.

    .venv/bin/python -m unittest discover -s tools/sandbox -p 'test_*.py' -v
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import unittest
import urllib.request
import uuid
from typing import Any
from unittest import mock

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import revio  # noqa: E402
import testing  # noqa: E402
from testing import SandboxProcess, free_port, hook_path, http, wait_for  # noqa: E402

SANDBOX = os.path.join(HERE, "revio.py")
API_KEY = "test-revio-key"
BRAND = "test-brand"
DELAY_MS = 200
RETURN_DELAY_MS = 400
RETRY_BASE_MS = 50
MAX_ATTEMPTS = 3
OTHER_ACCOUNT = "62845739201"  # no magic account: paid
PAYOUT_KEYS = {"id", "type", "status", "reference", "amount", "currency", "recipient",
               "failure_reason", "created_on", "updated_on"}
# every (long enough to be unambiguous) account number the tests send: none may
# appear in an answer, a webhook or the sandbox's log
ACCOUNTS_USED: set[str] = {"110000001", "110000002", "110000003", "910000001", OTHER_ACCOUNT}


class Receiver(testing.Receiver):
    def for_payout(self, path: str, payout_id: str) -> list[dict[str, Any]]:
        return [c for c in self.get(path) if json.loads(c["body"]).get("id") == payout_id]

    def wait_for_payout(self, path: str, payout_id: str, n: int = 1, timeout: float = 5.0
                        ) -> list[dict[str, Any]]:
        return wait_for(lambda: self.for_payout(path, payout_id), n, f"webhook(s) of {payout_id} at {path}",
                        timeout)


class RevioPayoutsTest(unittest.TestCase):
    sandbox: SandboxProcess
    url: str
    receiver: Receiver
    public_key: rsa.RSAPublicKey

    @classmethod
    def setUpClass(cls) -> None:
        cls.receiver = Receiver()
        cls.sandbox = SandboxProcess(SANDBOX, "REVIO_SANDBOX_", {
            "REVIO_SANDBOX_API_KEY": API_KEY,
            "REVIO_SANDBOX_BRAND_ID": BRAND,
            "REVIO_SANDBOX_WEBHOOK_URL": cls.receiver.base + "/default",
            "REVIO_SANDBOX_PAYOUT_DELAY_MS": str(DELAY_MS),
            "REVIO_SANDBOX_PAYOUT_RETURN_DELAY_MS": str(RETURN_DELAY_MS),
            "REVIO_SANDBOX_RETRY_BASE_MS": str(RETRY_BASE_MS),
            "REVIO_SANDBOX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "REVIO_SANDBOX_WEBHOOK_TIMEOUT_S": "2",
        })
        cls.url = cls.sandbox.url
        # the public key as a merchant gets it (no auth needed)
        pem = urllib.request.urlopen(cls.url + "/api/v1/public_key/", timeout=5).read()
        key = serialization.load_pem_public_key(pem)
        assert isinstance(key, rsa.RSAPublicKey)
        cls.public_key = key

    @classmethod
    def tearDownClass(cls) -> None:
        out = cls.sandbox.stop()
        bodies = cls.receiver.all_bodies()
        cls.receiver.stop()
        # the log: one line per request, never an account number
        assert "POST /api/v1/payouts/ 201" in out, out
        assert "GET /api/v1/payouts/ 200" in out, out
        assert "holding the answer" in out, out  # payout_timeout_after_accept
        assert "Traceback" not in out and "internal error" not in out, out
        for number in ACCOUNTS_USED:
            assert number not in out, f"the sandbox log contains the account number {number}"
            for body in bodies:
                assert number.encode() not in body, f"a webhook carried the account number {number}"

    @classmethod
    def log(cls) -> str:
        """The sandbox's stdout and stderr so far."""
        return cls.sandbox.log()

    def tearDown(self) -> None:
        self.call("POST", "/_sandbox/reset", {"purchases": True})

    # -- helpers -----------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, key: str | None = API_KEY,
             raw: bytes | None = None, timeout: float = 10) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        status, text = http(method, self.url + path, data,
                            {"Authorization": f"Bearer {key}"} if key is not None else None, timeout)
        for number in ACCOUNTS_USED:
            self.assertNotIn(number.encode(), text, f"{method} {path} answered an account number")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text.decode()

    def body(self, account: str = OTHER_ACCOUNT, ref: str | None = None, callback: str | None = None,
             **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "brand_id": BRAND,
            "reference": ref or f"po_{uuid.uuid4().hex}",
            "amount": 12_345,
            "currency": "ZAR",
            "recipient": {"account_holder": "Ada Lovelace", "account_number": account,
                          "branch_code": "250655", "account_type": "cheque"},
        }
        if callback is not None:
            body["callback_url"] = self.receiver.base + callback
        body.update(extra)
        return body

    def create(self, account: str = OTHER_ACCOUNT, ref: str | None = None, callback: str | None = None,
               **extra: Any) -> tuple[int, Any]:
        return self.call("POST", "/api/v1/payouts/", self.body(account, ref, callback, **extra))

    def hook(self) -> str:
        return hook_path(self)

    def verifies(self, signature: str, body: bytes) -> bool:
        try:
            self.public_key.verify(base64.b64decode(signature), body, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False

    def check_webhook(self, call: dict[str, Any], payout: dict[str, Any], status: str,
                      reason: str | None, event: str) -> dict[str, Any]:
        h, body = call["headers"], call["body"]
        self.assertEqual(h["content-type"], "application/json")
        self.assertTrue(self.verifies(h["x-signature"], body), "X-Signature verifies with the public key")
        self.assertFalse(self.verifies(h["x-signature"], body + b" "), "and only for this body")
        for number in ACCOUNTS_USED:
            self.assertNotIn(number.encode(), body)
        self.assertNotIn(b'": ', body, "compact JSON")
        got = json.loads(body)
        self.assertEqual(set(got), PAYOUT_KEYS | {"event_type"})
        self.assertEqual(got["event_type"], event)
        self.assertEqual((got["status"], got["failure_reason"]), (status, reason))
        for k in ("id", "type", "reference", "amount", "currency", "recipient", "created_on"):
            self.assertEqual(got[k], payout[k], k)
        self.assertGreaterEqual(got["updated_on"], payout["created_on"])
        return got

    def deliveries(self, payout_id: str) -> list[dict[str, Any]]:
        status, log = self.call("GET", f"/_sandbox/deliveries?payout_id={payout_id}")
        self.assertEqual(status, 200)
        return log

    def wait_deliveries(self, payout_id: str, url_suffix: str, n: int, timeout: float = 5.0
                        ) -> list[dict[str, Any]]:
        """The payout's delivery log entries to one target once there are n (the sandbox logs an
        attempt after reading the answer, so shortly after the receiver saw the request)."""
        deadline = time.monotonic() + timeout
        while True:
            log = [d for d in self.deliveries(payout_id) if d["url"].endswith(url_suffix)]
            if len(log) >= n or time.monotonic() > deadline:
                return log
            time.sleep(0.02)

    def wait_status(self, payout_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.call("GET", f"/api/v1/payouts/{payout_id}/")[1]
            if got["status"] == status or time.monotonic() > deadline:
                self.assertEqual(got["status"], status)
                return got
            time.sleep(0.02)

    # -- payout API ----------------------------------------------------------
    def test_auth(self) -> None:
        ref = f"po_{uuid.uuid4().hex}"
        for key in (None, "wrong", ""):
            status, out = self.call("POST", "/api/v1/payouts/", self.body(ref=ref), key=key)
            self.assertEqual(status, 401, key)
            self.assertEqual(out["error"], "unauthorized")
            self.assertIsInstance(out["message"], str)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={ref}", key=None)[0], 401)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{uuid.uuid4()}/", key="wrong")[0], 401)
        # nothing was stored by the refused calls
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={ref}"), (200, {"results": []}))
        self.assertEqual(self.call("GET", f"/_sandbox/payouts?reference={ref}"), (200, {"results": []}))

    def test_validation(self) -> None:
        long_number = "12345678901234567"  # 17 digits
        ACCOUNTS_USED.add(long_number)
        ref = f"po_{uuid.uuid4().hex}"
        base = self.body(ref=ref)

        def with_recipient(**kw: Any) -> dict[str, Any]:
            return {**base, "recipient": {**base["recipient"], **kw}}

        def without(key: str) -> dict[str, Any]:
            return {k: v for k, v in base.items() if k != key}

        def without_recipient(key: str) -> dict[str, Any]:
            return {**base, "recipient": {k: v for k, v in base["recipient"].items() if k != key}}

        cases: list[tuple[Any, str, str | None]] = [
            ([1], "invalid_request", None),
            ({**base, "brand_id": "other-brand"}, "invalid_brand", "brand_id"),
            (without("brand_id"), "invalid_brand", "brand_id"),
            (without("reference"), "validation_error", "reference"),
            ({**base, "reference": ""}, "validation_error", "reference"),
            ({**base, "reference": "x" * 65}, "validation_error", "reference"),
            ({**base, "reference": 7}, "validation_error", "reference"),
            ({**base, "amount": 0}, "validation_error", "amount"),
            ({**base, "amount": -100}, "validation_error", "amount"),
            ({**base, "amount": "100"}, "validation_error", "amount"),
            ({**base, "amount": 1.5}, "validation_error", "amount"),
            ({**base, "amount": True}, "validation_error", "amount"),
            (without("amount"), "validation_error", "amount"),
            ({**base, "currency": "USD"}, "validation_error", "currency"),
            (without("currency"), "validation_error", "currency"),
            (without("recipient"), "validation_error", "recipient"),
            ({**base, "recipient": "someone"}, "validation_error", "recipient"),
            (with_recipient(account_holder=""), "validation_error", "recipient.account_holder"),
            (with_recipient(account_holder="   "), "validation_error", "recipient.account_holder"),
            (with_recipient(account_holder=5), "validation_error", "recipient.account_holder"),
            (without_recipient("account_holder"), "validation_error", "recipient.account_holder"),
            (with_recipient(account_number="12345"), "validation_error", "recipient.account_number"),
            (with_recipient(account_number=long_number), "validation_error", "recipient.account_number"),
            (with_recipient(account_number=110000001), "validation_error", "recipient.account_number"),
            (with_recipient(account_number="11000000a1"), "validation_error", "recipient.account_number"),
            (with_recipient(account_number="110 000 001"), "validation_error", "recipient.account_number"),
            (without_recipient("account_number"), "validation_error", "recipient.account_number"),
            (with_recipient(branch_code="25065"), "validation_error", "recipient.branch_code"),
            (with_recipient(branch_code="2506551"), "validation_error", "recipient.branch_code"),
            (with_recipient(branch_code=250655), "validation_error", "recipient.branch_code"),
            (without_recipient("branch_code"), "validation_error", "recipient.branch_code"),
            (with_recipient(account_type="current"), "validation_error", "recipient.account_type"),
            (without_recipient("account_type"), "validation_error", "recipient.account_type"),
            ({**base, "callback_url": "ftp://example.com/x"}, "validation_error", "callback_url"),
            ({**base, "callback_url": 5}, "validation_error", "callback_url"),
        ]
        for body, code, field in cases:
            with self.subTest(body=body):
                status, out = self.call("POST", "/api/v1/payouts/", body)
                self.assertEqual((status, out["error"]), (400, code))
                self.assertIsInstance(out["message"], str)
                if field is not None:
                    self.assertIn(field, out["fields"])
                # errors never echo the account number (nor its digits)
                self.assertNotIn("0001", json.dumps(out))
                self.assertNotIn("5739201", json.dumps(out))
        # several errors at once are all reported
        status, out = self.call("POST", "/api/v1/payouts/", {**base, "amount": 0, "currency": "EUR",
                                                              "recipient": {"account_type": "x"}})
        self.assertEqual(status, 400)
        self.assertEqual(set(out["fields"]), {"amount", "currency", "recipient.account_holder",
                                              "recipient.account_number", "recipient.branch_code",
                                              "recipient.account_type"})
        self.assertEqual(self.call("POST", "/api/v1/payouts/", raw=b"{not json")[1]["error"], "invalid_json")
        # nothing was stored
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={ref}")[1], {"results": []})
        # the boundaries are accepted: 64-char reference, 6 and 16 digits, null callback_url
        for i, (number, ref64) in enumerate((("123456", "r" * 64), ("1234567890123456", "s" * 64))):
            if len(number) >= 9:
                ACCOUNTS_USED.add(number)
            body = self.body(number, ref=ref64, callback_url=None)
            body["recipient"]["account_type"] = ("savings", "transmission")[i]
            status, out = self.call("POST", "/api/v1/payouts/", body)
            self.assertEqual((status, out["status"]), (201, "pending"), out)
            self.assertEqual(out["recipient"]["account_number_masked"], "xxxxx" + number[-4:])
            self.assertEqual(out["recipient"]["account_type"], ("savings", "transmission")[i])

    def test_created_payout_shape(self) -> None:
        ref, hook = f"po_{uuid.uuid4().hex}", self.hook()
        t0 = int(time.time())
        status, out = self.create("110000001", ref=ref, callback=hook)
        self.assertEqual(status, 201)
        self.assertEqual(set(out), PAYOUT_KEYS)
        uuid.UUID(out["id"])
        self.assertEqual({k: out[k] for k in ("type", "status", "reference", "amount", "currency",
                                              "failure_reason")},
                         {"type": "payout", "status": "pending", "reference": ref, "amount": 12_345,
                          "currency": "ZAR", "failure_reason": None})
        self.assertEqual(out["recipient"], {"account_holder": "Ada Lovelace", "account_number_masked": "xxxxx0001",
                                            "branch_code": "250655", "account_type": "cheque"})
        self.assertTrue(t0 <= out["created_on"] == out["updated_on"] <= time.time())
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{out['id']}/"), (200, out))
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{out['id']}"), (200, out))
        control = self.call("GET", f"/_sandbox/payouts/{out['id']}")[1]
        self.assertEqual({k: v for k, v in control.items() if k != "sandbox"}, out)
        self.assertEqual(control["sandbox"]["rule"], "paid")
        self.assertEqual(control["sandbox"]["callback_url"], self.receiver.base + hook)
        self.assertEqual([t["status"] for t in control["sandbox"]["pending_transitions"]], ["paid"])

    def test_magic_accounts_final_state_by_get_and_webhook(self) -> None:
        cases = [("110000001", "paid", None, "paid"),
                 ("110000002", "unpaid", "account_unpaid", "unpaid"),
                 ("910000001", "rejected", "account_rejected", "rejected"),
                 (OTHER_ACCOUNT, "paid", None, "default")]
        created = []
        t0 = time.time()
        for account, status, reason, rule in cases:
            hook = self.hook()
            code, out = self.create(account, callback=hook)
            self.assertEqual((code, out["status"], out["failure_reason"]), (201, "pending", None))
            created.append((hook, out))
        for (account, status, reason, rule), (hook, payout) in zip(cases, created):
            with self.subTest(account=account):
                pid = payout["id"]
                calls = self.receiver.wait(hook)
                self.assertGreaterEqual(calls[0]["at"] - t0, DELAY_MS / 1000 - 0.02, "sent after the delay")
                event = f"payout.{status}"
                self.check_webhook(calls[0], payout, status, reason, event)
                # the brand-level webhook URL gets it too, as an independent delivery
                default = self.receiver.wait_for_payout("/default", pid)
                self.check_webhook(default[0], payout, status, reason, event)
                got = self.call("GET", f"/api/v1/payouts/{pid}/")[1]
                self.assertEqual((got["status"], got["failure_reason"]), (status, reason))
                self.assertEqual(got["recipient"]["account_number_masked"], "xxxxx" + account[-4:])
                self.assertEqual(self.call("GET", f"/_sandbox/payouts/{pid}")[1]["sandbox"]["rule"], rule)
        time.sleep(DELAY_MS / 1000 * 2)
        for hook, _ in created:
            self.assertEqual(len(self.receiver.get(hook)), 1, "one webhook per transition")
        log = self.wait_deliveries(created[0][1]["id"], "", 2)
        self.assertEqual(sorted((d["url"].rsplit("/", 1)[-1], d["event_type"], d["attempt"], d["status_code"],
                                 d["kind"], d["lost"]) for d in log),
                         sorted([(created[0][0].rsplit("/", 1)[-1], "payout.paid", 1, 200, "event", False),
                                 ("default", "payout.paid", 1, 200, "event", False)]))
        self.assertTrue(all("purchase_id" not in d and d["payout_id"] == created[0][1]["id"] for d in log))

    def test_returning_account_paid_then_returned(self) -> None:
        hook = self.hook()
        _, payout = self.create("110000003", callback=hook)
        pid = payout["id"]
        first = self.receiver.wait(hook)[0]
        self.check_webhook(first, payout, "paid", None, "payout.paid")
        got = self.call("GET", f"/api/v1/payouts/{pid}/")[1]
        self.assertEqual((got["status"], got["failure_reason"]), ("paid", None))
        self.assertEqual([t["status"] for t in self.call("GET", f"/_sandbox/payouts/{pid}")[1]["sandbox"]
                          ["pending_transitions"]], ["returned"])
        calls = self.receiver.wait(hook, 2)
        self.check_webhook(calls[1], payout, "returned", "returned_by_bank", "payout.returned")
        self.assertGreaterEqual(calls[1]["at"] - calls[0]["at"], RETURN_DELAY_MS / 1000 - 0.05)
        got = self.call("GET", f"/api/v1/payouts/{pid}/")[1]
        self.assertEqual((got["status"], got["failure_reason"]), ("returned", "returned_by_bank"))
        self.assertEqual(len(self.receiver.wait_for_payout("/default", pid, 2)), 2)
        time.sleep(RETURN_DELAY_MS / 1000)
        self.assertEqual(len(self.receiver.get(hook)), 2, "two webhooks, no more")
        events = [d["event_type"] for d in self.wait_deliveries(pid, "", 4)]
        self.assertEqual(sorted(events), ["payout.paid"] * 2 + ["payout.returned"] * 2)

    def test_idempotent_by_reference(self) -> None:
        hook, other_hook = self.hook(), self.hook()
        ref = f"po_{uuid.uuid4().hex}"
        s1, first = self.create("110000002", ref=ref, callback=hook)
        # another account, amount and callback: still the first payout, nothing new scheduled
        s2, second = self.create("110000001", ref=ref, callback=other_hook, amount=1)
        # even an otherwise invalid body answers the stored payout
        s3, third = self.call("POST", "/api/v1/payouts/", {"brand_id": BRAND, "reference": ref})
        self.assertEqual((s1, s2, s3), (201, 200, 200))
        self.assertEqual(second, first)
        self.assertEqual(third, first)
        self.receiver.wait(hook)
        s4, fourth = self.create("110000001", ref=ref)
        self.assertEqual(s4, 200)
        self.assertEqual((fourth["id"], fourth["status"], fourth["failure_reason"], fourth["amount"]),
                         (first["id"], "unpaid", "account_unpaid", 12_345))
        self.assertEqual(fourth["recipient"]["account_number_masked"], "xxxxx0002")
        time.sleep(DELAY_MS / 1000 * 2)
        self.assertEqual(len(self.receiver.get(hook)), 1, "one webhook only")
        self.assertEqual(self.receiver.get(other_hook), [])
        self.assertEqual(len(self.call("GET", "/_sandbox/payouts")[1]["results"]), 1)
        # the wrong brand is refused even for a known reference
        self.assertEqual(self.create(ref=ref, brand_id="nope")[0], 400)
        # concurrent first POSTs make one payout: one 201, the rest 200
        ref2 = f"po_{uuid.uuid4().hex}"
        outs: list[tuple[int, Any]] = []
        threads = [threading.Thread(target=lambda: outs.append(self.create(ref=ref2))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(s for s, _ in outs), [200] * 7 + [201])
        self.assertEqual(len({o["id"] for _, o in outs}), 1)

    def test_lookup_by_reference(self) -> None:
        ref = f"po_{uuid.uuid4().hex}"
        _, payout = self.create(ref=ref)
        self.create()  # another one
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={ref}"), (200, {"results": [payout]}))
        self.assertEqual(self.call("GET", f"/api/v1/payouts?reference={ref}"), (200, {"results": [payout]}))
        self.assertEqual(self.call("GET", "/api/v1/payouts/?reference=unknown"), (200, {"results": []}))
        self.assertEqual(self.call("GET", "/api/v1/payouts/")[1]["error"], "invalid_request")
        self.assertEqual(self.call("GET", "/api/v1/payouts/")[0], 400)
        # lazily settled there too
        time.sleep(DELAY_MS / 1000 + 0.05)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={ref}")[1]["results"][0]["status"], "paid")
        # the control API: no auth, with the sandbox part; all payouts without reference
        status, found = self.call("GET", f"/_sandbox/payouts?reference={ref}", key=None)
        self.assertEqual((status, [p["id"] for p in found["results"]]), (200, [payout["id"]]))
        self.assertEqual(found["results"][0]["sandbox"]["rule"], "default")
        self.assertEqual(len(self.call("GET", "/_sandbox/payouts", key=None)[1]["results"]), 2)

    def test_not_found_and_methods(self) -> None:
        unknown = str(uuid.uuid4())
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{unknown}/"),
                         (404, {"error": "not_found", "message": "no such payout"}))
        self.assertEqual(self.call("GET", f"/_sandbox/payouts/{unknown}")[0], 404)
        self.assertEqual(self.call("POST", f"/_sandbox/payouts/{unknown}/settle", {"status": "paid"})[0], 404)
        self.assertEqual(self.call("POST", f"/_sandbox/payouts/{unknown}/deliver", {})[0], 404)
        self.assertEqual(self.call("GET", "/api/v1/payouts/not-a-uuid!/")[0], 404)
        self.assertEqual(self.call("PUT", "/api/v1/payouts/", {})[0], 405)
        self.assertEqual(self.call("POST", f"/api/v1/payouts/{unknown}/", {})[0], 405)

    # -- faults --------------------------------------------------------------
    def test_payout_timeout_after_accept(self) -> None:
        faults = self.call("POST", "/_sandbox/faults", {"payout_timeout_after_accept": 1})[1]
        self.assertEqual(faults["payout_timeout_after_accept"], 1)
        hook = self.hook()
        body = self.body(callback=hook)
        ref = body["reference"]
        # validation errors do not consume the fault
        t0 = time.monotonic()
        self.assertEqual(self.call("POST", "/api/v1/payouts/", {**body, "amount": 0})[0], 400)
        self.assertLess(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        with self.assertRaises((TimeoutError, urllib.error.URLError)) as ctx:
            self.call("POST", "/api/v1/payouts/", body, timeout=1)
        if isinstance(ctx.exception, urllib.error.URLError):
            self.assertIsInstance(ctx.exception.reason, TimeoutError)
        self.assertLess(time.monotonic() - t0, 5)
        # Revio accepted it all the same, and it goes on as usual
        status, found = self.call("GET", f"/api/v1/payouts/?reference={ref}")
        self.assertEqual((status, len(found["results"])), (200, 1))
        payout = found["results"][0]
        self.check_webhook(self.receiver.wait(hook)[0], payout, "paid", None, "payout.paid")
        self.assertEqual(self.call("GET", "/_sandbox/faults")[1]["payout_timeout_after_accept"], 0)
        # the client's retry with the same reference answers at once with that payout
        t0 = time.monotonic()
        status, again = self.call("POST", "/api/v1/payouts/", body, timeout=5)
        self.assertLess(time.monotonic() - t0, 1)
        self.assertEqual((status, again["id"], again["status"]), (200, payout["id"], "paid"))
        # reset clears it
        self.call("POST", "/_sandbox/faults", {"payout_timeout_after_accept": 3})
        self.assertEqual(self.call("POST", "/_sandbox/reset", {})[1]["faults"]["payout_timeout_after_accept"], 0)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"payout_timeout_after_accept": -1})[0], 400)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"payout_timeout_after_accept": True})[0], 400)

    def test_lose_webhooks(self) -> None:
        self.call("POST", "/_sandbox/faults", {"lose_webhooks": 2})  # callback + brand URL
        hook = self.hook()
        _, payout = self.create("910000001", callback=hook)
        pid = payout["id"]
        got = self.wait_status(pid, "rejected")  # only reading finds it (reconciliation)
        self.assertEqual(got["failure_reason"], "account_rejected")
        deadline = time.monotonic() + 5
        while len(self.deliveries(pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(DELAY_MS / 1000)
        self.assertEqual(self.receiver.get(hook), [])
        self.assertEqual(self.receiver.for_payout("/default", pid), [])
        log = self.deliveries(pid)
        self.assertEqual([(d["event_type"], d["lost"], d["status_code"], d["attempt"]) for d in log],
                         [("payout.rejected", True, None, 1)] * 2)
        self.assertEqual(self.call("GET", "/_sandbox/faults")[1]["lose_webhooks"], 0)
        # a manual delivery still works (no faults)
        res = self.call("POST", f"/_sandbox/payouts/{pid}/deliver", {"url": self.receiver.base + hook})[1]
        self.assertEqual(res["status_codes"], [200])
        self.check_webhook(self.receiver.wait(hook)[0], payout, "rejected", "account_rejected", "payout.rejected")

    def test_duplicate_webhooks_and_retries(self) -> None:
        self.call("POST", "/_sandbox/faults", {"duplicate_webhooks": 1})
        hook = self.hook()
        _, payout = self.create("110000001", callback=hook)
        calls = self.receiver.wait(hook, 2)
        self.assertEqual(calls[0]["body"], calls[1]["body"])
        kinds = sorted(d["kind"] for d in self.wait_deliveries(payout["id"], hook, 2))
        self.assertEqual(kinds, ["duplicate", "event"])
        self.call("POST", "/_sandbox/faults", {"duplicate_webhooks": 0})
        # a failing receiver is retried with back-off, same body, re-signed alike
        hook2 = self.hook()
        self.receiver.script[hook2] = [500, 503, 200]
        _, payout2 = self.create("110000002", callback=hook2)
        calls = self.receiver.wait(hook2, 3)
        for c in calls:
            self.check_webhook(c, payout2, "unpaid", "account_unpaid", "payout.unpaid")
        self.assertGreaterEqual(calls[1]["at"] - calls[0]["at"], 0.8 * RETRY_BASE_MS / 1000 - 0.01)
        log = self.wait_deliveries(payout2["id"], hook2, 3)
        self.assertEqual([(d["attempt"], d["status_code"]) for d in log], [(1, 500), (2, 503), (3, 200)])

    def test_api_faults_apply_to_payouts(self) -> None:
        _, payout = self.create()
        self.call("POST", "/_sandbox/faults", {"down": True})
        self.assertEqual(self.create()[0], 503)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{payout['id']}/")[0], 503)
        self.assertEqual(self.call("GET", f"/_sandbox/payouts/{payout['id']}")[0], 200, "no faults on control")
        self.call("POST", "/_sandbox/faults", {"down": False, "fail_next_api_calls": 1})
        status, out = self.call("GET", f"/api/v1/payouts/?reference={payout['reference']}")
        self.assertEqual((status, out["error"]), (500, "internal_error"))
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={payout['reference']}")[0], 200)
        self.call("POST", "/_sandbox/faults", {"latency_ms": 300})
        t0 = time.monotonic()
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{payout['id']}/")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(len(self.call("GET", "/_sandbox/payouts")[1]["results"]), 1, "the 503 stored nothing")

    # -- control API -----------------------------------------------------------
    def test_settle(self) -> None:
        hook = self.hook()
        _, payout = self.create("110000001", callback=hook)
        pid = payout["id"]
        status, out = self.call("POST", f"/_sandbox/payouts/{pid}/settle", {"status": "rejected"}, key=None)
        self.assertEqual((status, out["status"], out["failure_reason"]), (200, "rejected", "account_rejected"))
        self.assertEqual(out["sandbox"]["pending_transitions"], [])
        self.check_webhook(self.receiver.wait(hook)[0], payout, "rejected", "account_rejected", "payout.rejected")
        time.sleep(DELAY_MS / 1000 * 2)
        self.assertEqual(len(self.receiver.get(hook)), 1, "the automatic payout.paid was cancelled")
        got = self.call("GET", f"/api/v1/payouts/{pid}/")[1]
        self.assertEqual((got["status"], got["failure_reason"]), ("rejected", "account_rejected"))
        # any state, with an explicit reason
        out = self.call("POST", f"/_sandbox/payouts/{pid}/settle",
                        {"status": "returned", "failure_reason": "account_closed"})[1]
        self.assertEqual((out["status"], out["failure_reason"]), ("returned", "account_closed"))
        self.check_webhook(self.receiver.wait(hook, 2)[1], payout, "returned", "account_closed", "payout.returned")
        out = self.call("POST", f"/_sandbox/payouts/{pid}/settle", {"status": "unpaid", "failure_reason": None})[1]
        self.assertEqual((out["status"], out["failure_reason"]), ("unpaid", None))
        self.receiver.wait(hook, 3)
        # settled "paid", a 110000003 payout is not returned later
        hook2 = self.hook()
        _, p3 = self.create("110000003", callback=hook2)
        out = self.call("POST", f"/_sandbox/payouts/{p3['id']}/settle", {"status": "paid"})[1]
        self.assertEqual((out["status"], out["failure_reason"]), ("paid", None))
        time.sleep((DELAY_MS + RETURN_DELAY_MS) / 1000 + 0.2)
        self.assertEqual([json.loads(c["body"])["event_type"] for c in self.receiver.get(hook2)], ["payout.paid"])
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{p3['id']}/")[1]["status"], "paid")
        for bad in ({"status": "pending"}, {"status": "nope"}, {}, {"status": "paid", "failure_reason": 5}):
            self.assertEqual(self.call("POST", f"/_sandbox/payouts/{pid}/settle", bad)[0], 400, bad)

    def test_deliver(self) -> None:
        hook = self.hook()
        _, pending = self.create("110000001", callback=hook)
        pid = pending["id"]
        status, out = self.call("POST", f"/_sandbox/payouts/{pid}/deliver", {})
        self.assertEqual((status, out["error"]), (400, "invalid_request"), "event_type required while pending")
        self.receiver.wait(hook)
        # three times, concurrently, to one url
        hook2 = self.hook()
        status, res = self.call("POST", f"/_sandbox/payouts/{pid}/deliver",
                                {"times": 3, "concurrent": True, "url": self.receiver.base + hook2}, key=None)
        self.assertEqual(status, 200)
        self.assertEqual((res["payout_id"], res["event_type"], res["status_codes"]),
                         (pid, "payout.paid", [200, 200, 200]))
        self.assertEqual([r["url"] for r in res["results"]], [self.receiver.base + hook2] * 3)
        calls = self.receiver.wait(hook2, 3)
        for c in calls:
            self.check_webhook(c, pending, "paid", None, "payout.paid")
        self.assertLess(max(c["at"] for c in calls) - min(c["at"] for c in calls), 1.0)
        # default targets: callback_url and the brand URL
        res = self.call("POST", f"/_sandbox/payouts/{pid}/deliver", {})[1]
        self.assertEqual(sorted(r["url"] for r in res["results"]),
                         sorted([self.receiver.base + hook, self.receiver.base + "/default"]))
        # a status override changes the sent body only
        res = self.call("POST", f"/_sandbox/payouts/{pid}/deliver",
                        {"status": "returned", "event_type": "payout.returned", "url": self.receiver.base + hook2})[1]
        self.assertEqual(res["status_codes"], [200])
        sent = json.loads(self.receiver.wait(hook2, 4)[3]["body"])
        self.assertEqual((sent["status"], sent["event_type"]), ("returned", "payout.returned"))
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{pid}/")[1]["status"], "paid")
        # a connection error is null
        dead = f"http://127.0.0.1:{free_port()}/nobody"
        res = self.call("POST", f"/_sandbox/payouts/{pid}/deliver", {"url": dead})[1]
        self.assertEqual(res["status_codes"], [None])
        self.assertTrue(res["results"][0]["error"])
        self.assertEqual(self.call("POST", f"/_sandbox/payouts/{pid}/deliver", {"times": 0})[0], 400)
        manual = [d for d in self.deliveries(pid) if d["kind"] == "manual"]
        self.assertEqual(len(manual), 3 + 2 + 1 + 1)
        self.assertTrue(all(d["payout_id"] == pid for d in manual))

    def test_reset_forgets_payouts(self) -> None:
        hook = self.hook()
        _, payout = self.create("110000003", callback=hook)
        self.call("POST", "/_sandbox/reset", {})  # faults only
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{payout['id']}/")[0], 200)
        self.call("POST", "/_sandbox/reset", {"purchases": True})
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{payout['id']}/")[0], 404)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/?reference={payout['reference']}")[1], {"results": []})
        time.sleep((DELAY_MS + RETURN_DELAY_MS) / 1000 + 0.2)
        self.assertEqual(self.receiver.get(hook), [], "a forgotten payout sends nothing")
        self.assertEqual(self.call("GET", "/_sandbox/deliveries")[1], [])
        # the reference is free again
        self.assertEqual(self.create(ref=payout["reference"])[0], 201)

    # -- purchases beside payouts ----------------------------------------------
    def test_purchases_still_work_beside_payouts(self) -> None:
        hook = self.hook()
        status, purchase = self.call("POST", "/api/v1/purchases/", {
            "brand_id": BRAND, "client": {"email": "ada@example.com"},
            "purchase": {"currency": "ZAR", "products": [{"name": "Top-up", "price": 5000}]},
            "success_callback": self.receiver.base + hook, "reference": "dep-1"})
        self.assertEqual((status, purchase["status"], purchase["purchase"]["total"]), (201, "created", 5000))
        _, payout = self.create(callback=self.hook())
        status, paid = self.call("POST", f"/_sandbox/purchases/{purchase['id']}/pay")
        self.assertEqual((status, paid["status"]), (200, "paid"))
        call = self.receiver.wait(hook)[0]
        self.assertTrue(self.verifies(call["headers"]["x-signature"], call["body"]))
        self.assertEqual(json.loads(call["body"]), {**paid, "event_type": "purchase.paid"})
        self.wait_status(payout["id"], "paid")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = self.call("GET", "/_sandbox/deliveries")[1]
            if len(log) >= 4:
                break
            time.sleep(0.02)
        self.assertEqual(len(log), 4)
        by_purchase = self.call("GET", f"/_sandbox/deliveries?purchase_id={purchase['id']}")[1]
        self.assertEqual(len(by_purchase), 2)
        for d in by_purchase:
            self.assertEqual(set(d), {"purchase_id", "event_type", "url", "attempt", "status_code", "error",
                                      "lost", "kind", "at"})
        by_payout = self.deliveries(payout["id"])
        self.assertEqual(len(by_payout), 2)
        for d in by_payout:
            self.assertEqual(set(d), {"payout_id", "event_type", "url", "attempt", "status_code", "error",
                                      "lost", "kind", "at"})
        self.assertEqual(self.call("GET", f"/_sandbox/deliveries?purchase_id={payout['id']}")[1], [])
        faults = self.call("GET", "/_sandbox/faults")[1]
        self.assertEqual(faults, {"down": False, "latency_ms": 0, "lose_webhooks": 0, "duplicate_webhooks": 0,
                                  "fail_next_api_calls": 0, "payout_timeout_after_accept": 0})
        # a purchase reset forgets both
        self.call("POST", "/_sandbox/reset", {"purchases": True})
        self.assertEqual(self.call("GET", f"/api/v1/purchases/{purchase['id']}/")[0], 404)
        self.assertEqual(self.call("GET", f"/api/v1/payouts/{payout['id']}/")[0], 404)

    # -- the account number stays private ----------------------------------------
    def test_account_number_never_leaves(self) -> None:
        number = "40817239561"
        ACCOUNTS_USED.add(number)
        hook = self.hook()
        status, payout = self.create(number, callback=hook)
        self.assertEqual(payout["recipient"]["account_number_masked"], "xxxxx9561")
        self.receiver.wait(hook)
        self.receiver.wait_for_payout("/default", payout["id"])
        self.call("POST", f"/_sandbox/payouts/{payout['id']}/deliver", {"times": 2})
        self.call("POST", f"/_sandbox/payouts/{payout['id']}/settle", {"status": "returned"})
        self.receiver.wait(hook, 4)
        # every read: call() checks each answer for every account number used
        self.call("GET", f"/api/v1/payouts/{payout['id']}/")
        self.call("GET", f"/api/v1/payouts/?reference={payout['reference']}")
        self.call("GET", f"/_sandbox/payouts/{payout['id']}")
        self.call("GET", "/_sandbox/payouts")
        self.call("GET", "/_sandbox/deliveries")
        self.assertEqual(self.create(number, ref=payout["reference"])[0], 200)
        for c in self.receiver.get(hook) + self.receiver.for_payout("/default", payout["id"]):
            self.assertNotIn(number.encode(), c["body"])
            self.assertNotIn(b"account_number\"", c["body"])
        # the log so far (the whole log is checked again at the end of the class)
        log = self.log()
        self.assertIn(f"webhook payout.returned {payout['id']}", log)
        self.assertNotIn(number, log)


class PayoutStateInProcessTest(unittest.TestCase):
    """revio.Sandbox in process, without its background plan thread."""

    def sandbox(self) -> Any:
        started: list[tuple[str, int, int]] = []
        emitted: list[tuple[str, str, str]] = []

        class Quiet(revio.Sandbox):
            def _start_payout_plan(self, payout_id: str, plan: int, generation: int) -> None:
                started.append((payout_id, plan, generation))

            def _emit_payout(self, payout: dict[str, Any], callback: str | None, event: str,
                             generation: int) -> None:
                emitted.append((payout["id"], payout["status"], event))

        with mock.patch.dict(os.environ, {"REVIO_SANDBOX_PAYOUT_DELAY_MS": "100",
                                          "REVIO_SANDBOX_PAYOUT_RETURN_DELAY_MS": "150",
                                          "REVIO_SANDBOX_BRAND_ID": "b"}):
            sb = Quiet("http://127.0.0.1:1")
        sb.started, sb.emitted = started, emitted
        return sb

    @staticmethod
    def body(account: str) -> dict[str, Any]:
        return {"brand_id": "b", "reference": f"r-{uuid.uuid4().hex}", "amount": 100, "currency": "ZAR",
                "recipient": {"account_holder": "A", "account_number": account, "branch_code": "123456",
                              "account_type": "savings"}}

    def test_lazy_settlement_without_the_background_thread(self) -> None:
        sb = self.sandbox()
        out, created = sb.create_payout(self.body("110000003"))
        self.assertTrue(created)
        self.assertEqual(len(sb.started), 1)
        self.assertEqual(sb.get_payout(out["id"])["status"], "pending")
        time.sleep(0.12)
        got = sb.get_payout(out["id"])
        self.assertEqual((got["status"], got["failure_reason"]), ("paid", None))
        self.assertEqual(got["updated_on"], int(sb.payouts[out["id"]]["_steps"][0]["due_wall"]))
        time.sleep(0.16)
        got = sb.find_payouts(out["reference"])["results"][0]
        self.assertEqual((got["status"], got["failure_reason"]), ("returned", "returned_by_bank"))
        self.assertEqual(sb.emitted, [], "reads settle, they do not send")
        # the plan thread, run late: each transition's webhook still goes out once,
        # with the payout as that transition left it
        sb._run_payout_plan(*sb.started[0])
        self.assertEqual(sb.emitted, [(out["id"], "paid", "payout.paid"), (out["id"], "returned", "payout.returned")])
        sb._run_payout_plan(*sb.started[0])
        self.assertEqual(len(sb.emitted), 2, "exactly once")

    def test_stored_state_keeps_only_the_last_four_digits(self) -> None:
        sb = self.sandbox()
        for number in ("110000002", "910000001", "73950184627"):
            out, _ = sb.create_payout(self.body(number))
            self.assertNotIn(number, repr(sb.payouts))
            self.assertEqual(sb.payouts[out["id"]]["recipient"]["account_number_masked"], "xxxxx" + number[-4:])
        self.assertEqual(sorted(r["_rule"] for r in sb.payouts.values()), ["default", "rejected", "unpaid"])

    def test_settle_stops_the_plan(self) -> None:
        sb = self.sandbox()
        out, _ = sb.create_payout(self.body("110000001"))
        sb.settle_payout(out["id"], {"status": "unpaid"})
        self.assertEqual(sb.emitted, [(out["id"], "unpaid", "payout.unpaid")])
        time.sleep(0.12)
        sb._run_payout_plan(*sb.started[0])
        self.assertEqual(len(sb.emitted), 1)
        self.assertEqual(sb.get_payout(out["id"])["status"], "unpaid")


if __name__ == "__main__":
    unittest.main()
