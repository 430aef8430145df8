"""The telephony sandbox, tools/sandbox/telephony.py (a Twilio stand-in).

Checks the signature scheme against Twilio's published vectors, then starts the
sandbox as a subprocess on a free port, plus a small in-process HTTP server that
plays "our side" (it verifies every X-Twilio-Signature and answers TwiML as the
Purse voice webhook does: a <Gather> for the PIN, then a <Dial timeLimit="60">),
and places calls through the control API.

    .venv/bin/python -m unittest discover -s tools/sandbox -p 'test_*.py' -v
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import unittest
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import telephony  # noqa: E402
from testing import FakeServer, SandboxProcess, free_port, http  # noqa: E402

SANDBOX = os.path.join(HERE, "telephony.py")
AUTH_TOKEN = "test-telephony-token"
ACCOUNT_SID = "AC" + "ab" * 16
TOLL_FREE = "+18005550199"
RETRY_BASE_MS = 50
MAX_ATTEMPTS = 3
PIN = "123456"
CALLER = "+15551230001"
FORM = "application/x-www-form-urlencoded"


def independent_signature(token: str, url: str, pairs: list[tuple[str, str]]) -> str:
    """Twilio's signature computed here, not with telephony.sign."""
    data = url
    for key, value in sorted(pairs):
        data += key + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class OurSide(FakeServer):
    """Plays Purse's webhooks: verifies each signature (403 if wrong), answers TwiML.

    ``/voice/<scenario>`` answers TwiML by scenario; ``/status/<name>`` records the
    status callback and answers the statuses scripted for it (default 200).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> tuple[int, str | None, bytes]:
        url = self.base + handler.path
        params = urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        verified = headers.get("x-twilio-signature") == independent_signature(AUTH_TOKEN, url, params)
        path = urllib.parse.urlsplit(handler.path).path
        entry = {"path": path, "url": url, "headers": headers, "raw": raw, "params": params,
                 "form": dict(params), "verified": verified, "at": time.monotonic()}
        with self.lock:
            self.requests.append(entry)
            scripted = self.scripted(path)
        if not verified:
            return 403, "text/xml", b""
        if path.startswith("/status/"):
            return scripted or 200, "text/xml", b""
        return scripted or 200, "text/xml", self.twiml(path, url, dict(params)).encode()

    @staticmethod
    def twiml(path: str, url: str, form: dict[str, str]) -> str:
        scenario = path.split("/")[2] if path.startswith("/voice/") else path.strip("/")
        if scenario == "hangup":
            return "<Response><Hangup/></Response>"
        if scenario == "reject":
            return '<Response><Reject reason="busy"/></Response>'
        if scenario == "garbage":
            return "this is not TwiML"
        if scenario == "dial-done":
            return "<Response><Say>The call has ended.</Say><Hangup/></Response>"
        if "Digits" not in form:
            return (f'<Response><Gather numDigits="6" action="{url}" method="POST">'
                    "<Say>Enter your six digit PIN</Say></Gather>"
                    "<Say>We did not get your PIN.</Say></Response>")
        if form["Digits"] != PIN:
            if scenario == "retry-pin":
                return ('<Response><Say>Wrong PIN, try again.</Say>'
                        f'<Gather numDigits="6" action="{url}"/></Response>')
            return "<Response><Say>That PIN is not valid.</Say><Hangup/></Response>"
        action = ' action="/dial-done"' if scenario == "pin-action" else ""
        return f'<Response><Dial timeLimit="60"{action}><Client>alice</Client></Dial></Response>'

    def get(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def for_call(self, call_sid: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["form"].get("CallSid") == call_sid]


class SignatureTest(unittest.TestCase):
    URL = "https://mycompany.com/myapp.php?foo=1&bar=2"

    def test_twilios_documented_example_signs_to_its_published_signature(self) -> None:
        # The example of twilio.com/docs/usage/webhooks/webhooks-security today. The brief quoted
        # GvWf1cFY/Q7PnoempGyD5oXAezc= for it: that is the value of the older version of the
        # same example, whose Caller and From are +14158675310 (checked below).
        params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
                  "From": "+12349013030", "To": "+18005551212"}
        self.assertEqual(telephony.sign("12345", self.URL, params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
        older = {**params, "Caller": "+14158675310", "From": "+14158675310"}
        self.assertEqual(telephony.sign("12345", self.URL, older), "GvWf1cFY/Q7PnoempGyD5oXAezc=")

    def test_twilio_python_library_vectors_sign_alike(self) -> None:
        # twilio/twilio-python tests/unit/test_request_validator.py
        params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
                  "To": "+18005551212", "Caller": "+14158675309"}
        self.assertEqual(telephony.sign("12345", self.URL, params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        # a repeated key is sorted by value too, whatever order it came in
        repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
        self.assertEqual(telephony.sign("12345", self.URL, repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=")
        self.assertEqual(telephony.sign("12345", self.URL, {"Sid": "CA123", "SidAccount": "AC123",
                                                            "Digits": ["5678", "1234"]}),
                         "IK+Dwps556ElfBT0I3Rgjkr1wJU=")

    def test_verify_refuses_any_change_to_url_params_or_token(self) -> None:
        params = {"CallSid": "CA1", "Digits": "1234"}
        sig = telephony.sign("12345", self.URL, params)
        self.assertTrue(telephony.verify("12345", self.URL, params, sig))
        self.assertFalse(telephony.verify("12345", self.URL, {**params, "Digits": "9999"}, sig))
        self.assertFalse(telephony.verify("12345", self.URL.replace("https", "http"), params, sig))
        self.assertFalse(telephony.verify("12345", self.URL + "&x=1", params, sig))
        self.assertFalse(telephony.verify("54321", self.URL, params, sig))
        self.assertFalse(telephony.verify("12345", self.URL, params, sig[:-1]))


class TelephonySandboxTest(unittest.TestCase):
    sandbox: SandboxProcess
    url: str
    ours: OurSide

    @classmethod
    def setUpClass(cls) -> None:
        cls.ours = OurSide()
        cls.sandbox = SandboxProcess(SANDBOX, "TELEPHONY_SANDBOX_", {
            "TELEPHONY_SANDBOX_AUTH_TOKEN": AUTH_TOKEN,
            "TELEPHONY_SANDBOX_ACCOUNT_SID": ACCOUNT_SID,
            "TELEPHONY_SANDBOX_TOLL_FREE": TOLL_FREE,
            "TELEPHONY_SANDBOX_VOICE_URL": cls.ours.base + "/voice/pin?number=tollfree",
            "TELEPHONY_SANDBOX_STATUS_URL": cls.ours.base + "/status/default",
            "TELEPHONY_SANDBOX_RETRY_BASE_MS": str(RETRY_BASE_MS),
            "TELEPHONY_SANDBOX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "TELEPHONY_SANDBOX_WEBHOOK_TIMEOUT_S": "2",
        })
        cls.url = cls.sandbox.url

    @classmethod
    def tearDownClass(cls) -> None:
        out = cls.sandbox.stop()
        cls.ours.stop()
        # one line per request; never the token, a signature, the PIN or a phone number
        assert "POST /_sandbox/calls 200" in out, out
        assert AUTH_TOKEN not in out, "the sandbox log contains the auth token"
        assert PIN not in out, "the sandbox log contains the PIN"
        assert CALLER not in out and CALLER[1:] not in out, "the sandbox log contains the caller's number"
        for r in cls.ours.requests:
            sig = r["headers"].get("x-twilio-signature", "")
            assert not sig or sig not in out, "the sandbox log contains a signature"

    def tearDown(self) -> None:
        self.call("POST", "/_sandbox/reset", {})

    # -- helpers -------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, text = http(method, self.url + path, data, headers, timeout=30)
        return status, json.loads(text) if text else None

    def status_path(self) -> str:
        return f"/status/{uuid.uuid4().hex[:12]}"

    def place(self, scenario: str = "pin", status_path: str | None = None, **extra: Any
              ) -> tuple[dict[str, Any], str]:
        status_path = status_path or self.status_path()
        body = {"from": CALLER, "digits": PIN, "talk_seconds": 95, "wait": True,
                "voice_url": f"{self.ours.base}/voice/{scenario}?number=tollfree",
                "status_url": self.ours.base + status_path, **extra}
        status, rec = self.call("POST", "/_sandbox/calls", body)
        self.assertEqual(status, 200 if body["wait"] else 202, rec)
        return rec, status_path

    def assert_signed(self, requests: list[dict[str, Any]]) -> None:
        self.assertTrue(requests)
        for r in requests:
            self.assertTrue(r["verified"], f"{r['path']}: signature does not verify")
            self.assertEqual(r["headers"]["content-type"], FORM)
            self.assertTrue(r["headers"]["i-twilio-idempotency-token"])

    # -- calls ---------------------------------------------------------------------
    def test_a_call_asks_for_the_pin_then_dials_and_reports_the_duration_capped_by_time_limit(self) -> None:
        rec, status_path = self.place(talk_seconds=95)
        sid = rec["call_sid"]
        self.assertRegex(sid, r"^CA[0-9a-f]{32}$")
        self.assertEqual((rec["state"], rec["status"], rec["duration"], rec["error"]),
                         ("done", "completed", 60, None))
        self.assertEqual({k: rec["dial"][k] for k in ("time_limit", "client", "outcome", "duration")},
                         {"time_limit": 60, "client": "alice", "outcome": "completed", "duration": 60})
        self.assertEqual(len(rec["twiml"]), 2)
        self.assertIn("<Gather", rec["twiml"][0])
        self.assertIn('<Dial timeLimit="60">', rec["twiml"][1])
        self.assertEqual([(r["kind"], r["status_code"]) for r in rec["requests"]], [("voice", 200), ("gather", 200)])
        self.assertEqual(rec["status_callback"]["attempts"], [200])
        self.assertTrue(rec["status_callback"]["delivered"])

        voice, gather, status = self.ours.for_call(sid)
        self.assert_signed([voice, gather, status])
        common = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": sid,
                  "Direction": "inbound", "From": CALLER, "To": TOLL_FREE, "Caller": CALLER,
                  "Called": TOLL_FREE}
        self.assertEqual({k: voice["form"].get(k) for k in common}, common)
        self.assertEqual(voice["form"]["CallStatus"], "ringing")
        self.assertNotIn("Digits", voice["form"])
        self.assertEqual(voice["path"], "/voice/pin")
        self.assertIn("?number=tollfree", voice["url"], "signed over the URL with its query")
        self.assertEqual((gather["form"]["Digits"], gather["form"]["CallStatus"]), (PIN, "in-progress"))
        self.assertEqual({k: gather["form"].get(k) for k in common}, common)
        self.assertEqual(status["path"], status_path)
        self.assertEqual({k: status["form"].get(k) for k in common}, common)
        self.assertEqual((status["form"]["CallStatus"], status["form"]["CallDuration"]), ("completed", "60"))
        self.assertEqual((status["form"]["SequenceNumber"], status["form"]["CallbackSource"]),
                         ("0", "call-progress-events"))
        self.assertRegex(status["form"]["Timestamp"], r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
        # the sandbox's own helper verifies what it sent
        self.assertTrue(telephony.verify(AUTH_TOKEN, status["url"], status["params"],
                                         status["headers"]["x-twilio-signature"]))
        self.assertEqual(self.call("GET", f"/_sandbox/calls/{sid}"), (200, rec))

    def test_a_call_shorter_than_the_time_limit_lasts_its_talk_time(self) -> None:
        rec, status_path = self.place(talk_seconds=42)
        self.assertEqual((rec["status"], rec["duration"]), ("completed", 42))
        self.assertEqual(self.ours.get(status_path)[0]["form"]["CallDuration"], "42")

    def test_the_status_callback_is_retried_after_a_500_with_the_same_body_and_signature(self) -> None:
        status_path = self.status_path()
        self.ours.script[status_path] = [500, 503]
        rec, _ = self.place(status_path=status_path)
        self.assertEqual(rec["status_callback"]["attempts"], [500, 503, 200])
        self.assertTrue(rec["status_callback"]["delivered"])
        got = self.ours.get(status_path)
        self.assertEqual(len(got), 3)
        self.assert_signed(got)
        self.assertEqual({r["raw"] for r in got}, {got[0]["raw"]}, "byte-identical body")
        self.assertEqual({r["headers"]["x-twilio-signature"] for r in got}, {got[0]["headers"]["x-twilio-signature"]})
        self.assertEqual({r["headers"]["i-twilio-idempotency-token"] for r in got},
                         {got[0]["headers"]["i-twilio-idempotency-token"]})
        # back-off: base, then 2 * base
        self.assertGreaterEqual(got[1]["at"] - got[0]["at"], RETRY_BASE_MS / 1000 - 0.005)
        self.assertGreaterEqual(got[2]["at"] - got[1]["at"], 2 * RETRY_BASE_MS / 1000 - 0.005)

    def test_the_status_callback_is_given_up_after_max_attempts(self) -> None:
        status_path = self.status_path()
        self.ours.script[status_path] = [500] * 10
        rec, _ = self.place(status_path=status_path)
        self.assertEqual(rec["status_callback"]["attempts"], [500] * MAX_ATTEMPTS)
        self.assertFalse(rec["status_callback"]["delivered"])
        dead, _ = self.place(status_url=f"http://127.0.0.1:{free_port()}/status")
        self.assertEqual(len(dead["status_callback"]["attempts"]), MAX_ATTEMPTS)
        self.assertTrue(all(isinstance(a, str) for a in dead["status_callback"]["attempts"]))

    def test_a_duplicate_status_callback_is_byte_identical_to_the_first(self) -> None:
        rec, status_path = self.place()
        first = self.ours.wait(status_path)[0]
        status, res = self.call("POST", f"/_sandbox/calls/{rec['call_sid']}/status", {"duplicate": True})
        self.assertEqual((status, res), (200, {"results": [200]}))
        first, dup = self.ours.wait(status_path, 2)
        self.assert_signed([dup])
        self.assertEqual(dup["raw"], first["raw"])
        for h in ("x-twilio-signature", "i-twilio-idempotency-token"):
            self.assertEqual(dup["headers"][h], first["headers"][h])
        self.assertEqual(self.call("POST", f"/_sandbox/calls/{rec['call_sid']}/status",
                                   {"duplicate": True, "times": 2})[1], {"results": [200, 200]})
        self.assertEqual(self.call("POST", "/_sandbox/calls/CA00/status", {"duplicate": True})[0], 404)

    def test_hangup_ends_the_answered_call_completed_with_duration_zero(self) -> None:
        rec, status_path = self.place("hangup")
        self.assertEqual((rec["status"], rec["duration"], rec["dial"]), ("completed", 0, None))
        form = self.ours.get(status_path)[0]["form"]
        self.assertEqual((form["CallStatus"], form["CallDuration"]), ("completed", "0"))

    def test_a_wrong_pin_gets_a_hangup_and_no_dial(self) -> None:
        rec, status_path = self.place(digits="999999")
        self.assertEqual((rec["status"], rec["duration"], rec["dial"]), ("completed", 0, None))
        self.assertIn("<Hangup/>", rec["twiml"][-1])
        self.assertEqual(self.ours.get(status_path)[0]["form"]["CallDuration"], "0")

    def test_each_gather_takes_the_next_digits_entry(self) -> None:
        rec, _ = self.place("retry-pin", digits=["000000", PIN], talk_seconds=10)
        gathers = [r for r in self.ours.for_call(rec["call_sid"]) if r["form"].get("Digits")]
        self.assertEqual([g["form"]["Digits"] for g in gathers], ["000000", PIN])
        self.assertEqual((rec["status"], rec["duration"], rec["dial"]["client"]), ("completed", 10, "alice"))

    def test_no_digits_runs_the_verbs_after_the_gather(self) -> None:
        rec, _ = self.place(digits=None)
        self.assertEqual((rec["status"], rec["duration"], len(rec["requests"])), ("completed", 0, 1))

    def test_reject_as_the_first_verb_leaves_the_call_unanswered(self) -> None:
        rec, status_path = self.place("reject")
        self.assertEqual((rec["status"], rec["duration"], rec["answered"]), ("busy", None, False))
        form = self.ours.get(status_path)[0]["form"]
        self.assertEqual(form["CallStatus"], "busy")
        self.assertNotIn("CallDuration", form)

    def test_a_callee_who_does_not_answer_still_ends_an_answered_call(self) -> None:
        # As at Twilio: our TwiML answered the inbound call, so it ends completed; its
        # CallDuration is the ringing (the Dial's timeout, 30 s), not talk time. The callee's
        # outcome reaches the Dial's action.
        rec, status_path = self.place("pin-action", outcome="no-answer", ivr_seconds=12)
        self.assertEqual((rec["status"], rec["duration"]), ("completed", 42))
        self.assertEqual((rec["dial"]["outcome"], rec["dial"]["duration"]), ("no-answer", 0))
        action = self.ours.wait("/dial-done")[-1]
        self.assert_signed([action])
        self.assertEqual((action["form"]["DialCallStatus"], action["form"]["DialCallSid"]),
                         ("no-answer", rec["dial"]["dial_call_sid"]))
        self.assertNotIn("DialCallDuration", action["form"])
        self.assertEqual(self.ours.get(status_path)[0]["form"]["CallDuration"], "42")

    def test_an_answered_dial_reports_its_talk_time_to_the_action(self) -> None:
        rec, _ = self.place("pin-action", talk_seconds=95, ivr_seconds=8, ring_seconds=4)
        self.assertEqual((rec["status"], rec["duration"]), ("completed", 8 + 4 + 60))
        action = [r for r in self.ours.get("/dial-done") if r["form"]["CallSid"] == rec["call_sid"]][0]
        self.assertEqual((action["form"]["DialCallStatus"], action["form"]["DialCallDuration"]),
                         ("completed", "60"))
        self.assertEqual(rec["requests"][-1]["kind"], "dial_action")

    def test_the_caller_hanging_up_early_cancels_the_call(self) -> None:
        rec, status_path = self.place(caller_hangs_up_early=True)
        self.assertEqual((rec["status"], rec["duration"], len(rec["requests"])), ("canceled", None, 1))
        self.assertEqual(self.ours.get(status_path)[0]["form"]["CallStatus"], "canceled")

    def test_a_voice_url_that_fails_ends_the_call_with_an_application_error(self) -> None:
        rec, status_path = self.place(voice_url=f"http://127.0.0.1:{free_port()}/voice")
        self.assertEqual(rec["status"], "completed")
        self.assertTrue(rec["error"].startswith("11200"), rec["error"])
        self.assertEqual(self.ours.get(status_path)[0]["form"]["CallStatus"], "completed")
        garbage, _ = self.place("garbage")
        self.assertTrue(garbage["error"].startswith("12100"), garbage["error"])

    def test_without_wait_the_call_runs_in_the_background(self) -> None:
        rec, status_path = self.place(wait=False)
        self.assertEqual(rec["state"], "running")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rec = self.call("GET", f"/_sandbox/calls/{rec['call_sid']}")[1]
            if rec["state"] == "done":
                break
            time.sleep(0.02)
        self.assertEqual((rec["state"], rec["duration"]), ("done", 60))
        self.assertEqual(len(self.ours.get(status_path)), 1)
        self.assertIn(rec["call_sid"], [c["call_sid"] for c in self.call("GET", "/_sandbox/calls")[1]])

    def test_defaults_come_from_the_environment(self) -> None:
        status, rec = self.call("POST", "/_sandbox/calls", {"from": CALLER, "digits": PIN, "wait": True})
        self.assertEqual((status, rec["to"], rec["status"], rec["duration"]), (200, TOLL_FREE, "completed", 30))
        self.assertEqual(rec["requests"][0]["url"], self.ours.base + "/voice/pin?number=tollfree")
        self.assertEqual(rec["status_callback"]["url"], self.ours.base + "/status/default")

    # -- provider API and faults ---------------------------------------------------------
    def test_a_lost_status_callback_leaves_the_truth_in_the_calls_resource(self) -> None:
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"lose_status_callbacks": 1})[0], 200)
        rec, status_path = self.place(talk_seconds=20)
        self.assertEqual((rec["status_callback"]["lost"], rec["status_callback"]["attempts"]), (True, []))
        self.assertEqual(self.ours.get(status_path), [])
        auth = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()}
        base = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls"
        status, call = self.call("GET", f"{base}/{rec['call_sid']}.json", headers=auth)
        self.assertEqual((status, call["status"], call["duration"], call["direction"], call["from"]),
                         (200, "completed", "20", "inbound", CALLER))
        children = self.call("GET", f"{base}.json?ParentCallSid={rec['call_sid']}", headers=auth)[1]["calls"]
        self.assertEqual([(c["sid"], c["to"], c["status"], c["duration"], c["direction"]) for c in children],
                         [(rec["dial"]["dial_call_sid"], "client:alice", "completed", "20", "outbound-dial")])
        bad = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT_SID}:wrong".encode()).decode()}
        self.assertEqual(self.call("GET", f"{base}/{rec['call_sid']}.json", headers=bad)[1]["code"], 20003)
        self.assertEqual(self.call("GET", f"{base}/CA{'0' * 32}.json", headers=auth)[0], 404)
        # a late delivery on request still works, and the next call is not lost
        self.assertEqual(self.call("POST", f"/_sandbox/calls/{rec['call_sid']}/status", {})[1], {"results": [200]})
        self.assertEqual(self.place()[0]["status_callback"]["attempts"], [200])

    def test_faults_validate_and_reset_clears_them(self) -> None:
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"status_callback_delay_ms": 200})[1],
                         {"lose_status_callbacks": 0, "status_callback_delay_ms": 200})
        t0 = time.monotonic()
        self.place()
        self.assertGreaterEqual(time.monotonic() - t0, 0.2)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"nope": 1})[0], 400)
        self.assertEqual(self.call("POST", "/_sandbox/faults", {"lose_status_callbacks": -1})[0], 400)
        self.call("POST", "/_sandbox/reset", {})
        self.assertEqual(self.call("GET", "/_sandbox/faults")[1],
                         {"lose_status_callbacks": 0, "status_callback_delay_ms": 0})

    def test_reset_with_calls_forgets_them(self) -> None:
        rec, _ = self.place()
        self.call("POST", "/_sandbox/reset", {"calls": True})
        self.assertEqual(self.call("GET", f"/_sandbox/calls/{rec['call_sid']}")[0], 404)

    def test_sign_endpoint_matches_the_scheme(self) -> None:
        url = "https://example.com/webhooks/telephony/status?x=1"
        params = {"CallSid": "CA1", "CallStatus": "completed", "Digits": ["2", "1"]}
        status, res = self.call("POST", "/_sandbox/sign", {"url": url, "params": params})
        self.assertEqual((status, res["signature"]),
                         (200, independent_signature(AUTH_TOKEN, url, telephony.param_pairs(params))))
        forged = self.call("POST", "/sandbox/sign", {"url": url, "params": params, "auth_token": "other"})[1]
        self.assertEqual(forged["signature"], telephony.sign("other", url, params))
        self.assertEqual(self.call("POST", "/_sandbox/sign", {"params": {}})[0], 400)

    def test_bad_requests_and_aliases(self) -> None:
        for body in ({}, {"from": "5551230001"}, {"from": CALLER, "outcome": "maybe"},
                     {"from": CALLER, "talk_seconds": -1}, {"from": CALLER, "digits": 123456},
                     {"from": CALLER, "digits": "12a"}, {"from": CALLER, "voice_url": "ftp://x"},
                     {"from": CALLER, "bogus": 1}, {"from": CALLER, "wait": "yes"}):
            status, res = self.call("POST", "/_sandbox/calls", body)
            self.assertEqual((status, res["error"]), (400, "invalid_request"), body)
        self.assertEqual(self.call("GET", "/health"), (200, {"ok": True}))
        self.assertEqual(self.call("GET", "/sandbox/health"), (200, {"ok": True}))
        self.assertEqual(self.call("GET", "/_sandbox/calls/CAnope")[0], 404)
        self.assertEqual(self.call("GET", "/elsewhere")[0], 404)


if __name__ == "__main__":
    unittest.main()
