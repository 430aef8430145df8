"""The KYC (PAN verification) sandbox, tools/sandbox/kyc.py.

Starts the sandbox as a subprocess on a free port with a short callback delay,
plus a small in-process HTTP receiver for its webhooks, and checks the provider
API, the digit rules, Standard Webhooks signing, retries and the control API.

    .venv/bin/python -m unittest discover -s tools/sandbox -p 'test_*.py' -v
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import unittest
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kyc  # noqa: E402
from testing import Receiver, SandboxProcess, free_port, hook_path, http  # noqa: E402

SANDBOX = os.path.join(HERE, "kyc.py")
API_KEY = "test-kyc-key"
SECRET = "whsec_" + base64.b64encode(b"a test secret for the kyc sandbox").decode()
DELAY_MS = 200
RETRY_BASE_MS = 50
MAX_ATTEMPTS = 4
# every PAN the tests send: none may appear in an answer, a webhook or the log
PANS_USED: set[str] = set()


def independent_signature(secret: str, webhook_id: str, ts: str, body: bytes) -> str:
    """The Standard Webhooks signature computed here, not with kyc.sign."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, f"{webhook_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class KycSandboxTest(unittest.TestCase):
    sandbox: SandboxProcess
    url: str
    receiver: Receiver

    @classmethod
    def setUpClass(cls) -> None:
        cls.receiver = Receiver()
        cls.sandbox = SandboxProcess(SANDBOX, "KYC_SANDBOX_", {
            "KYC_SANDBOX_API_KEY": API_KEY,
            "KYC_SANDBOX_WEBHOOK_SECRET": SECRET,
            "KYC_SANDBOX_WEBHOOK_URL": cls.receiver.base + "/default",
            "KYC_SANDBOX_CALLBACK_DELAY_MS": str(DELAY_MS),
            "KYC_SANDBOX_RETRY_BASE_MS": str(RETRY_BASE_MS),
            "KYC_SANDBOX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "KYC_SANDBOX_WEBHOOK_TIMEOUT_S": "2",
        })
        cls.url = cls.sandbox.url

    @classmethod
    def tearDownClass(cls) -> None:
        out = cls.sandbox.stop()
        cls.receiver.stop()
        # the log: one line per request, never a PAN
        assert "POST /v3/pan-verification 200" in out, out
        for pan in PANS_USED:
            assert pan not in out, f"the sandbox log contains the PAN {pan}"

    def tearDown(self) -> None:
        self.call("POST", "/_sandbox/reset", {})

    # -- helpers -----------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, key: str | None = API_KEY,
             raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        status, text = http(method, self.url + path, data, {"x-karza-key": key} if key is not None else None)
        for pan in PANS_USED:
            self.assertNotIn(pan.encode(), text, f"{method} {path} answered the PAN")
        return status, json.loads(text) if text else None

    def submit(self, digits: str, ref: str | None = None, callback: str | None = None, **extra: Any
               ) -> tuple[int, Any, str]:
        pan = f"ABCPV{digits}Q"
        PANS_USED.add(pan)
        ref = ref or f"kyc_{uuid.uuid4().hex}"
        body = {"consent": "Y", "pan": pan, "name": "Ada Lovelace", "dob": "1990-01-31",
                "client_ref": ref, **extra}
        if callback is not None:
            body["callback_url"] = self.receiver.base + callback
        status, out = self.call("POST", "/v3/pan-verification", body)
        return status, out, ref

    def path(self) -> str:
        return hook_path(self)

    def check_webhook(self, call: dict[str, Any], request_id: str, ref: str, status: str,
                      reason: str | None, secret: str = SECRET) -> dict[str, Any]:
        h, body = call["headers"], call["body"]
        self.assertEqual(h["content-type"], "application/json")
        self.assertTrue(h["webhook-id"].startswith("msg_"), h["webhook-id"])
        self.assertRegex(h["webhook-timestamp"], r"^\d+$")
        self.assertLess(abs(int(h["webhook-timestamp"]) - time.time()), 30)
        self.assertEqual(h["webhook-signature"],
                         independent_signature(secret, h["webhook-id"], h["webhook-timestamp"], body))
        self.assertTrue(kyc.verify(secret, h["webhook-id"], h["webhook-timestamp"], body, h["webhook-signature"]))
        for pan in PANS_USED:
            self.assertNotIn(pan.encode(), body)
        self.assertNotIn(b" ", body, "compact JSON")
        event = json.loads(body)
        self.assertEqual(set(event), {"type", "timestamp", "data"})
        self.assertEqual(event["type"], "kyc.pan.completed")
        self.assertRegex(event["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(event["data"], {"request_id": request_id, "client_ref": ref,
                                         "status": status, "reason": reason})
        return event

    # -- signing -----------------------------------------------------------
    def test_standard_webhooks_reference_vector(self) -> None:
        want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        args = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330)
        self.assertEqual(kyc.sign(*args, '{"test": 2432232314}'), want)
        self.assertEqual(kyc.sign(*args, b'{"test": 2432232314}'), want)
        self.assertEqual(kyc.sign(args[0], args[1], "1614265330", '{"test": 2432232314}'), want)
        self.assertTrue(kyc.verify(*args, '{"test": 2432232314}', "v1,bogus " + want))
        self.assertFalse(kyc.verify(*args, '{"test": 2432232315}', want))
        status, out = self.call("POST", "/_sandbox/sign", {
            "webhook_id": args[1], "timestamp": args[2], "body": '{"test": 2432232314}', "secret": args[0]})
        self.assertEqual((status, out), (200, {"signature": want}))
        # without "secret": the sandbox's own secret
        status, out = self.call("POST", "/_sandbox/sign", {"webhook_id": "msg_x", "timestamp": "5", "body": "{}"})
        self.assertEqual(out["signature"], independent_signature(SECRET, "msg_x", "5", b"{}"))
        status, out = self.call("POST", "/_sandbox/sign", {"webhook_id": "msg_x", "timestamp": 5, "body": {}})
        self.assertEqual((status, out["error"]), (400, "invalid_request"))

    def test_default_secret_decodes(self) -> None:
        self.assertEqual(kyc.secret_key(kyc.DEFAULT_SECRET), b"sandbox-kyc-webhook-secret-32-bytes")
        with self.assertRaises(ValueError):
            kyc.secret_key("whsec_not base64!")

    # -- provider API ------------------------------------------------------
    def test_auth(self) -> None:
        body = {"consent": "Y", "pan": "ABCPV1111Q", "client_ref": "auth-1"}
        for key in (None, "wrong", ""):
            status, out = self.call("POST", "/v3/pan-verification", body, key=key)
            self.assertEqual(status, 401, key)
            self.assertEqual(out["error"], "unauthorized")
            self.assertIsInstance(out["message"], str)
        status, out = self.call("GET", "/v3/pan-verification/kyc_req_00", key="wrong")
        self.assertEqual((status, out["error"]), (401, "unauthorized"))
        status, out = self.call("GET", "/v3/pan-verification?client_ref=auth-1", key=None)
        self.assertEqual(status, 401)
        # nothing was stored by the refused call
        self.assertEqual(self.call("GET", "/v3/pan-verification?client_ref=auth-1")[0], 404)

    def test_validation(self) -> None:
        base = {"consent": "Y", "pan": "ABCPV1111Q", "client_ref": "val-1"}
        PANS_USED.add("ABCPV1111Q")
        cases = [
            ({**base, "consent": "N"}, "consent_required"),
            ({k: v for k, v in base.items() if k != "consent"}, "consent_required"),
            ({**base, "consent": True}, "consent_required"),
            ({**base, "pan": "abcpv1111q"}, "invalid_pan"),
            ({**base, "pan": "ABCP11111Q"}, "invalid_pan"),
            ({**base, "pan": "ABCPV1111QQ"}, "invalid_pan"),
            ({**base, "pan": "ABCPV1111"}, "invalid_pan"),
            ({**base, "pan": 1234}, "invalid_pan"),
            ({k: v for k, v in base.items() if k != "pan"}, "invalid_pan"),
            ({k: v for k, v in base.items() if k != "client_ref"}, "invalid_request"),
            ({**base, "client_ref": ""}, "invalid_request"),
            ({**base, "client_ref": "x" * 65}, "invalid_request"),
            ({**base, "client_ref": 7}, "invalid_request"),
            ({**base, "name": 7}, "invalid_request"),
            ({**base, "callback_url": "ftp://x"}, "invalid_request"),
        ]
        for body, code in cases:
            status, out = self.call("POST", "/v3/pan-verification", body)
            self.assertEqual((status, out["error"]), (400, code), body)
            self.assertNotIn("1111", out["message"], "errors never echo the PAN")
        status, out = self.call("POST", "/v3/pan-verification", raw=b"{not json")
        self.assertEqual((status, out["error"]), (400, "invalid_json"))
        status, out = self.call("POST", "/v3/pan-verification", [1])
        self.assertEqual((status, out["error"]), (400, "invalid_request"))
        self.assertEqual(self.call("GET", "/v3/pan-verification?client_ref=val-1")[0], 404)
        # 64 characters is fine; name and dob are optional
        status, out = self.call("POST", "/v3/pan-verification", {**base, "client_ref": "y" * 64})
        self.assertEqual((status, out["status"]), (200, "pending"))

    def test_1111_pending_then_verified_webhook(self) -> None:
        hook = self.path()
        t0 = time.time()
        status, out, ref = self.submit("1111", callback=hook)
        self.assertEqual(status, 200)
        self.assertEqual(set(out), {"request_id", "client_ref", "status", "reason"})
        self.assertRegex(out["request_id"], r"^kyc_req_[0-9a-f]+$")
        self.assertEqual((out["client_ref"], out["status"], out["reason"]), (ref, "pending", None))
        rid = out["request_id"]
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{rid}")[1]["status"], "pending")
        calls = self.receiver.wait(hook)
        self.assertGreaterEqual(calls[0]["at"] - t0, DELAY_MS / 1000 - 0.02, "sent after the delay")
        self.check_webhook(calls[0], rid, ref, "verified", None)
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{rid}"),
                         (200, {"request_id": rid, "client_ref": ref, "status": "verified", "reason": None}))
        self.assertEqual(self.call("GET", f"/v3/pan-verification?client_ref={ref}")[1]["request_id"], rid)
        stored = self.call("GET", f"/_sandbox/requests/{rid}")[1]
        self.assertEqual(stored["pan_digits"], "1111")
        self.assertEqual(stored["callback_url"], self.receiver.base + hook)
        self.assertNotIn("pan", stored)
        self.assertTrue(stored["has_name"] and stored["has_dob"])
        deadline = time.monotonic() + 5
        while stored["webhook"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.02)
            stored = self.call("GET", f"/_sandbox/requests/{rid}")[1]
        self.assertEqual(stored["webhook"], "delivered")
        log = self.call("GET", f"/_sandbox/deliveries?request_id={rid}")[1]
        self.assertEqual([(d["attempt"], d["status_code"], d["kind"], d["sent_status"]) for d in log],
                         [(1, 200, "event", "verified")])
        self.assertEqual(log[0]["webhook_id"], calls[0]["headers"]["webhook-id"])

    def test_other_digits_verified_and_default_webhook_url(self) -> None:
        status, out, ref = self.submit("7890")  # no callback_url: KYC_SANDBOX_WEBHOOK_URL
        self.assertEqual((status, out["status"]), (200, "pending"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            mine = [c for c in self.receiver.get("/default") if json.loads(c["body"])["data"]["client_ref"] == ref]
            if mine:
                break
            time.sleep(0.02)
        self.assertEqual(len(mine), 1)
        self.check_webhook(mine[0], out["request_id"], ref, "verified", None)

    def test_2222_rejected_name_mismatch(self) -> None:
        hook = self.path()
        status, out, ref = self.submit("2222", callback=hook)
        self.assertEqual((status, out["status"], out["reason"]), (200, "pending", None))
        calls = self.receiver.wait(hook)
        self.check_webhook(calls[0], out["request_id"], ref, "rejected", "name_mismatch")
        got = self.call("GET", f"/v3/pan-verification/{out['request_id']}")[1]
        self.assertEqual((got["status"], got["reason"]), ("rejected", "name_mismatch"))

    def test_3333_verified_synchronously_no_webhook(self) -> None:
        hook = self.path()
        status, out, ref = self.submit("3333", callback=hook)
        self.assertEqual((status, out["status"], out["reason"]), (200, "verified", None))
        time.sleep(DELAY_MS / 1000 * 3)
        self.assertEqual(self.receiver.get(hook), [])
        self.assertEqual(self.call("GET", f"/_sandbox/deliveries?request_id={out['request_id']}")[1], [])
        self.assertEqual(self.call("GET", f"/_sandbox/requests/{out['request_id']}")[1]["webhook"], "none")

    def test_4444_verified_only_by_polling(self) -> None:
        hook = self.path()
        status, out, ref = self.submit("4444", callback=hook)
        rid = out["request_id"]
        self.assertEqual((status, out["status"]), (200, "pending"))
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{rid}")[1]["status"], "pending")
        time.sleep(DELAY_MS / 1000 * 3)
        self.assertEqual(self.receiver.get(hook), [])
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{rid}")[1]["status"], "verified")
        self.assertEqual(self.call("GET", f"/v3/pan-verification?client_ref={ref}")[1]["status"], "verified")
        self.assertEqual(self.call("GET", f"/_sandbox/deliveries?request_id={rid}")[1], [])
        # a manual delivery works for it (and for a 3333 one)
        res = self.call("POST", f"/_sandbox/requests/{rid}/deliver", {})[1]
        self.assertEqual(res["results"], [200])
        self.check_webhook(self.receiver.wait(hook)[0], rid, ref, "verified", None)

    def test_5555_provider_unavailable_nothing_stored(self) -> None:
        status, out, ref = self.submit("5555", callback=self.path())
        self.assertEqual((status, out["error"]), (503, "provider_unavailable"))
        self.assertEqual(self.call("GET", f"/v3/pan-verification?client_ref={ref}"),
                         (404, {"error": "not_found", "message": "no verification request with this client_ref"}))
        # a retry with the same client_ref and another PAN is a new request
        status, out, _ = self.submit("3333", ref=ref)
        self.assertEqual((status, out["status"]), (200, "verified"))

    def test_lazy_status_without_background_thread(self) -> None:
        # Pause webhooks: the result must still be final on reads once the delay passed.
        self.call("POST", "/_sandbox/faults", {"webhooks_paused": True})
        hook = self.path()
        _, out, _ = self.submit("2222", callback=hook)
        time.sleep(DELAY_MS / 1000 + 0.05)
        got = self.call("GET", f"/v3/pan-verification/{out['request_id']}")[1]
        self.assertEqual((got["status"], got["reason"]), ("rejected", "name_mismatch"))

    def test_not_found(self) -> None:
        self.assertEqual(self.call("GET", "/v3/pan-verification/kyc_req_nope")[1]["error"], "not_found")
        self.assertEqual(self.call("GET", "/v3/pan-verification/kyc_req_nope")[0], 404)
        self.assertEqual(self.call("GET", "/v3/pan-verification")[0], 400)
        self.assertEqual(self.call("GET", "/_sandbox/requests/kyc_req_nope")[0], 404)
        self.assertEqual(self.call("POST", "/_sandbox/requests/kyc_req_nope/deliver", {})[0], 404)

    def test_client_ref_idempotency(self) -> None:
        hook = self.path()
        ref = f"kyc_{uuid.uuid4().hex}"
        s1, first, _ = self.submit("1111", ref=ref, callback=hook)
        s2, second, _ = self.submit("2222", ref=ref, callback=hook)  # other digits: still the first
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(first, second)
        calls = self.receiver.wait(hook)
        time.sleep(DELAY_MS / 1000 * 2)
        s3, third, _ = self.submit("1111", ref=ref, callback=hook)
        self.assertEqual(third, {**first, "status": "verified"})
        time.sleep(DELAY_MS / 1000 * 2)
        self.assertEqual(len(self.receiver.get(hook)), 1, "one webhook only")
        self.check_webhook(calls[0], first["request_id"], ref, "verified", None)
        # concurrent first submissions make one request
        ref2 = f"kyc_{uuid.uuid4().hex}"
        outs: list[Any] = []
        threads = [threading.Thread(target=lambda: outs.append(self.submit("4444", ref=ref2)[1]))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len({o["request_id"] for o in outs}), 1)

    def test_retries_keep_webhook_id_and_resign(self) -> None:
        hook = self.path()
        self.receiver.script[hook] = [500, 503, 200]
        _, out, ref = self.submit("1111", callback=hook)
        calls = self.receiver.wait(hook, 3)
        ids = {c["headers"]["webhook-id"] for c in calls}
        self.assertEqual(len(ids), 1, "one webhook-id across retries")
        bodies = {c["body"] for c in calls}
        self.assertEqual(len(bodies), 1, "the body is the same on every attempt")
        for c in calls:
            self.check_webhook(c, out["request_id"], ref, "verified", None)
        # exponential back-off: >= 0.8 * base, then >= 0.8 * 2 * base
        self.assertGreaterEqual(calls[1]["at"] - calls[0]["at"], 0.8 * RETRY_BASE_MS / 1000 - 0.01)
        self.assertGreaterEqual(calls[2]["at"] - calls[1]["at"], 1.6 * RETRY_BASE_MS / 1000 - 0.01)
        time.sleep(0.3)
        self.assertEqual(len(self.receiver.get(hook)), 3, "no attempt after a 2xx")
        log = self.call("GET", f"/_sandbox/deliveries?request_id={out['request_id']}")[1]
        self.assertEqual([(d["attempt"], d["status_code"]) for d in log], [(1, 500), (2, 503), (3, 200)])
        self.assertEqual({d["webhook_id"] for d in log}, ids)

    def test_retries_give_up_after_max_attempts(self) -> None:
        dead = f"http://127.0.0.1:{free_port()}/nobody"
        status, out, _ = self.submit("1111", callback_url=dead)
        self.assertEqual(status, 200)
        rid = out["request_id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stored = self.call("GET", f"/_sandbox/requests/{rid}")[1]
            if stored["webhook"] == "failed":
                break
            time.sleep(0.05)
        self.assertEqual(stored["webhook"], "failed")
        log = self.call("GET", f"/_sandbox/deliveries?request_id={rid}")[1]
        self.assertEqual([d["attempt"] for d in log], list(range(1, MAX_ATTEMPTS + 1)))
        self.assertTrue(all(d["status_code"] is None and d["error"] for d in log), log)
        self.assertEqual(len({d["webhook_id"] for d in log}), 1)

    # -- control API -------------------------------------------------------
    def test_deliver_three_times_concurrently(self) -> None:
        hook = self.path()
        _, out, ref = self.submit("3333", callback=hook)
        rid = out["request_id"]
        status, res = self.call("POST", f"/_sandbox/requests/{rid}/deliver", {"times": 3, "concurrent": True})
        self.assertEqual(status, 200)
        self.assertEqual(res["results"], [200, 200, 200])
        calls = self.receiver.wait(hook, 3)
        self.assertEqual(len(calls), 3)
        self.assertEqual({c["headers"]["webhook-id"] for c in calls}, {res["webhook_id"]})
        for c in calls:
            self.check_webhook(c, rid, ref, "verified", None)
        # the three arrived together (barrier), well within one second
        ats = [c["at"] for c in calls]
        self.assertLess(max(ats) - min(ats), 1.0)
        log = self.call("GET", f"/_sandbox/deliveries?request_id={rid}")[1]
        self.assertEqual([d["kind"] for d in log], ["manual"] * 3)

    def test_deliver_overrides(self) -> None:
        hook = self.path()
        _, out, ref = self.submit("3333", callback=hook)
        rid = out["request_id"]
        # status override, fixed webhook id and stale timestamp; stored state unchanged
        res = self.call("POST", f"/_sandbox/requests/{rid}/deliver",
                        {"status": "rejected", "webhook_id": "msg_fixed", "timestamp": 1614265330})[1]
        self.assertEqual(res, {"webhook_id": "msg_fixed", "results": [200]})
        call = self.receiver.wait(hook)[0]
        self.assertEqual(call["headers"]["webhook-timestamp"], "1614265330")
        self.assertEqual(call["headers"]["webhook-id"], "msg_fixed")
        self.assertEqual(call["headers"]["webhook-signature"],
                         independent_signature(SECRET, "msg_fixed", "1614265330", call["body"]))
        self.assertEqual(json.loads(call["body"])["data"]["status"], "rejected")
        self.assertEqual(json.loads(call["body"])["data"]["reason"], "name_mismatch")
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{rid}")[1]["status"], "verified")
        # a forged signature (another secret), to another url, with reason override
        other = "whsec_" + base64.b64encode(b"not the real secret").decode()
        hook2 = self.path()
        res = self.call("POST", f"/_sandbox/requests/{rid}/deliver",
                        {"secret": other, "url": self.receiver.base + hook2, "reason": "x"})[1]
        self.assertEqual(res["results"], [200])
        forged = self.receiver.wait(hook2)[0]
        h = forged["headers"]
        self.assertEqual(h["webhook-signature"],
                         independent_signature(other, h["webhook-id"], h["webhook-timestamp"], forged["body"]))
        self.assertFalse(kyc.verify(SECRET, h["webhook-id"], h["webhook-timestamp"], forged["body"],
                                    h["webhook-signature"]))
        self.assertEqual(json.loads(forged["body"])["data"]["reason"], "x")
        # a connection error shows as a string
        dead = f"http://127.0.0.1:{free_port()}/"
        res = self.call("POST", f"/_sandbox/requests/{rid}/deliver", {"url": dead, "times": 2})[1]
        self.assertEqual(len(res["results"]), 2)
        self.assertTrue(all(isinstance(r, str) for r in res["results"]), res)
        self.assertEqual(self.call("POST", f"/_sandbox/requests/{rid}/deliver", {"times": 0})[0], 400)

    def test_complete_sets_state_without_webhook(self) -> None:
        hook = self.path()
        _, out, _ = self.submit("1111", callback=hook)
        rid = out["request_id"]
        status, stored = self.call("POST", f"/_sandbox/requests/{rid}/complete", {"status": "rejected"})
        self.assertEqual((status, stored["status"], stored["reason"], stored["webhook"]),
                         (200, "rejected", "name_mismatch", "cancelled"))
        time.sleep(DELAY_MS / 1000 * 3)
        self.assertEqual(self.receiver.get(hook), [], "the scheduled webhook was cancelled")
        got = self.call("GET", f"/v3/pan-verification/{rid}")[1]
        self.assertEqual((got["status"], got["reason"]), ("rejected", "name_mismatch"))
        self.assertEqual(self.call("POST", f"/_sandbox/requests/{rid}/complete", {"status": "nope"})[0], 400)

    def test_faults_down_and_slow(self) -> None:
        _, out, ref = self.submit("3333")
        status, faults = self.call("POST", "/_sandbox/faults", {"down": True})
        self.assertEqual(faults, {"down": True, "slow_ms": 0, "webhooks_paused": False})
        status, res, _ = self.submit("1111")
        self.assertEqual((status, res["error"]), (503, "provider_unavailable"))
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{out['request_id']}")[0], 503)
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{out['request_id']}", key="wrong")[0], 503)
        self.assertEqual(self.call("GET", "/_sandbox/health"), (200, {"ok": True}))
        self.assertEqual(self.call("GET", "/_sandbox/faults")[1]["down"], True)
        self.call("POST", "/_sandbox/faults", {"down": False, "slow_ms": 300})
        t0 = time.monotonic()
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{out['request_id']}")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"bogus": 1})[0], 400)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"slow_ms": -1})[0], 400)
        self.call("POST", "/_sandbox/reset", {})
        self.assertEqual(self.call("GET", "/_sandbox/faults")[1],
                         {"down": False, "slow_ms": 0, "webhooks_paused": False})

    def test_webhooks_paused_then_released(self) -> None:
        self.call("POST", "/_sandbox/faults", {"webhooks_paused": True})
        hook = self.path()
        _, out, ref = self.submit("1111", callback=hook)
        time.sleep(DELAY_MS / 1000 * 3)
        self.assertEqual(self.receiver.get(hook), [])
        self.assertEqual(self.call("GET", f"/_sandbox/requests/{out['request_id']}")[1]["webhook"], "sending")
        self.call("POST", "/_sandbox/faults", {"webhooks_paused": False})
        self.check_webhook(self.receiver.wait(hook)[0], out["request_id"], ref, "verified", None)

    def test_reset_requests(self) -> None:
        hook = self.path()
        _, out, ref = self.submit("1111", callback=hook)
        self.call("POST", "/_sandbox/reset", {"requests": True})
        self.assertEqual(self.call("GET", f"/v3/pan-verification/{out['request_id']}")[0], 404)
        self.assertEqual(self.call("GET", "/_sandbox/deliveries")[1], [])
        time.sleep(DELAY_MS / 1000 * 3)
        self.assertEqual(self.receiver.get(hook), [], "a forgotten request sends nothing")


if __name__ == "__main__":
    unittest.main()
