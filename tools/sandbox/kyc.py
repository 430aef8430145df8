#!/usr/bin/env python3
"""Local sandbox of a Karza-like KYC provider (PAN verification, async webhooks).

Standard library only: an HTTP server, HMAC-SHA256 for Standard Webhooks
signatures (https://www.standardwebhooks.com). All state lives in memory behind
one lock and is lost on restart.

Usage: kyc.py [--host 127.0.0.1] [--port $PURSE_KYC_PORT|4590]

Environment
  KYC_SANDBOX_API_KEY          accepted ``x-karza-key`` header value (default
                               ``sandbox-kyc-key``)
  KYC_SANDBOX_WEBHOOK_SECRET   Standard Webhooks secret ``whsec_<base64 of the key
                               bytes>`` (default
                               ``whsec_c2FuZGJveC1reWMtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM=``).
                               The HMAC key is the base64-DECODED part after
                               ``whsec_`` (a secret without the prefix is read the
                               same way). An undecodable secret stops the start.
  KYC_SANDBOX_WEBHOOK_URL      callback target of a request that carries no
                               ``callback_url`` (unset: such results send no webhook)
  KYC_SANDBOX_CALLBACK_DELAY_MS  time from submission until an async result is
                               decided and its webhook sent (default 1000)
  KYC_SANDBOX_RETRY_BASE_MS    webhook retry base delay (default 500)
  KYC_SANDBOX_MAX_ATTEMPTS     webhook attempts per delivery, first included (default 6)
  KYC_SANDBOX_WEBHOOK_TIMEOUT_S  timeout of one webhook POST (default 10)

Provider API (like Karza's PAN verification)
  Auth: header ``x-karza-key: <key>``; wrong or missing -> 401
  ``{"error": "unauthorized", "message": ...}``. Every error is JSON
  ``{"error": code, "message": text}``; no answer, log line or webhook ever
  carries the PAN (personal data), and request bodies are never logged.

  POST /v3/pan-verification   body {"consent": "Y", "pan": "ABCPV1111Q",
      "name"?: str, "dob"?: str, "client_ref": str, "callback_url"?: str}
      consent must be "Y"                    else 400 ``consent_required``
      pan must match ^[A-Z]{5}[0-9]{4}[A-Z]$ else 400 ``invalid_pan``
      client_ref a string of 1..64 chars     else 400 ``invalid_request``
      name, dob, callback_url: optional strings (null = absent), else 400
      ``invalid_request``; callback_url must be an http(s) URL.
      The answer depends on the PAN's four digits (characters 6-9):
        5555  provider error: 503 ``provider_unavailable``, nothing stored
        3333  verified synchronously: 200 status "verified", no webhook
        2222  200 "pending"; after CALLBACK_DELAY_MS "rejected" with reason
              "name_mismatch", webhook sent
        4444  200 "pending"; after the delay "verified", but NO webhook is ever
              sent (only polling finds it)
        6666  200 "pending" forever: never decided, no webhook (the provider lost
              the check; only /_sandbox/.../complete decides it)
        1111 and any other digits: 200 "pending"; after the delay "verified",
              webhook sent
      Answer (200): {"request_id": "kyc_req_<hex>", "client_ref", "status":
      "pending"|"verified"|"rejected", "reason": null|"name_mismatch"}.
      Idempotent by client_ref (checked after validation, before the digit
      rules): a second POST with a known client_ref answers that stored request
      (same request_id, its current status), whatever else the body says, and
      schedules nothing new.
  GET  /v3/pan-verification/<request_id>      the same shape; 404 ``not_found``
  GET  /v3/pan-verification?client_ref=<ref>  the same, by our reference; 404
      ``not_found`` if unknown, 400 ``invalid_request`` without client_ref.
  Status is also computed lazily: once CALLBACK_DELAY_MS has passed since the
  submission the result is final on every read, even if the background thread
  has not run yet.

Webhooks (Standard Webhooks)
  When an async result is decided (not for 3333 nor 4444) a background thread
  POSTs to the request's callback_url, else KYC_SANDBOX_WEBHOOK_URL; with
  neither, nothing is sent (the delivery log gets one ``kind: "skipped"`` entry).
  Body, compact JSON, no PAN:
    {"type":"kyc.pan.completed","timestamp":"<RFC3339, when decided>",
     "data":{"request_id":...,"client_ref":...,"status":"verified"|"rejected",
             "reason":null|"name_mismatch"}}
  Headers: ``content-type: application/json``, ``webhook-id: msg_<hex>`` (one per
  delivery, the same on all its retries), ``webhook-timestamp: <unix seconds>``,
  ``webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>``.
  Every attempt is signed afresh with its own (current) timestamp; the body stays
  byte-identical. A connection error or non-2xx answer is retried after
  base * 2^n ms (n = 0, 1, ...) times a random jitter factor in [0.8, 1.2], up to
  MAX_ATTEMPTS attempts. Every attempt is written to the delivery log.
  ``sign(secret, webhook_id, timestamp, body)`` in this module makes a signature
  (the tests check it against the Standard Webhooks reference vector).

Sandbox control API (no auth, no faults, JSON in and out, only under /_sandbox/)
  GET  /_sandbox/health                      {"ok": true}
  GET  /_sandbox/requests/<request_id>       the stored request: {request_id,
        client_ref, status, reason, callback_url, pan_digits (the 4 digits only,
        never the PAN), has_name, has_dob, created_at, decides_at (unix seconds;
        null when decided at submission), decided_at (null while pending),
        webhook}. ``webhook`` is the automatic webhook's state: "none" (3333,
        4444), "scheduled", "cancelled" (by /complete), "skipped" (no target),
        "sending", "delivered" or "failed" (gave up).
  POST /_sandbox/requests/<request_id>/deliver
        {"times"?: 1, "concurrent"?: false, "status"?, "reason"?, "webhook_id"?,
         "timestamp"?: int, "url"?, "secret"?}
        (re)send the result webhook ``times`` times (1..1000) synchronously, no
        retries, ignoring faults (also webhooks_paused), all with the same
        webhook-id (the given one or one made for this call) and the same body;
        with ``concurrent`` all sends are released together by a barrier.
        ``status``/``reason`` override what is sent (stored state unchanged);
        without them the current status and reason are sent (even "pending");
        with only ``status``, reason is "name_mismatch" for "rejected", else
        null. ``timestamp`` fixes the signed webhook-timestamp (stale or future
        tests; default: the time of each send); ``secret`` signs with another
        secret (a forged signature); ``url`` overrides the target (default
        callback_url, else KYC_SANDBOX_WEBHOOK_URL; 400 if none). Works for any
        request, 3333 and 4444 ones too. Answers
        {"webhook_id": ..., "results": [http status (int) or error string, ...]}.
  POST /_sandbox/requests/<request_id>/complete  {"status": "verified"|"rejected",
        "reason"?: str|null} set the final state now, without a webhook; a
        still scheduled automatic webhook is cancelled. Reason defaults to
        "name_mismatch" for rejected, null for verified. Answers the stored request.
  POST /_sandbox/sign   {"webhook_id", "timestamp" (int or digits), "body" (the
        exact payload string), "secret"?} -> {"signature": "v1,..."}
  GET  /_sandbox/deliveries[?request_id=]    delivery log, oldest first:
        {request_id, webhook_id, url, attempt, status_code, error, kind,
         sent_status, at}; kind is "event" (automatic), "manual" (/deliver) or
        "skipped"; status_code is null on a connection error (then ``error``
        says why); sent_status is the KYC status in the body; ``at`` unix seconds.
  GET  /_sandbox/faults                      current faults
  POST /_sandbox/faults   partial update of
        {"down": false, "slow_ms": 0, "webhooks_paused": false}
        down: every provider API call (/v3/...) answers 503
        ``provider_unavailable``; slow_ms: every provider API call sleeps that
        long first; webhooks_paused: automatic webhook attempts wait (polling)
        until unpaused, then go out. Answers the faults after the update.
  POST /_sandbox/reset    clears faults (which also releases paused webhooks);
        with {"requests": true} also forgets all requests and the delivery log
        (their pending timers and deliveries then do nothing).

Logging: one line per HTTP request (method, path without query, status) and one
per webhook attempt (request id, webhook id, url, outcome); never bodies, PANs,
names nor signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, wherever we are started from
import common  # noqa: E402
from common import ApiError  # noqa: E402

PROG = "kyc"
DEFAULT_SECRET = "whsec_c2FuZGJveC1reWMtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXM="
PAN_RE = re.compile(r"[A-Z]{5}[0-9]{4}[A-Z]")
STATUSES = ("pending", "verified", "rejected")
EVENT_TYPE = "kyc.pan.completed"


def log(msg: str) -> None:
    common.log(PROG, msg)


# -- Standard Webhooks signing ------------------------------------------------
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    if not isinstance(secret, str):
        raise ValueError("secret must be a string")
    b64 = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not whsec_<base64>")
    if not key:
        raise ValueError("secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{webhook_id}.{timestamp}.{body}``."""
    if isinstance(body, str):
        body = body.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def verify(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str, header: str) -> bool:
    """True if any ``v1,`` entry of a (space-separated) webhook-signature header matches."""
    want = sign(secret, webhook_id, timestamp, body)
    return any(hmac.compare_digest(want, part) for part in header.split())


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sandbox(common.FaultsMixin):
    """All sandbox state and behaviour; HTTP-agnostic except for webhook sending."""

    BOOLEAN_FAULTS = ("down", "webhooks_paused")

    def __init__(self) -> None:
        self.api_key = os.environ.get("KYC_SANDBOX_API_KEY", "sandbox-kyc-key")
        self.secret = os.environ.get("KYC_SANDBOX_WEBHOOK_SECRET") or DEFAULT_SECRET
        try:
            secret_key(self.secret)
        except ValueError as e:
            raise SystemExit(f"kyc: KYC_SANDBOX_WEBHOOK_SECRET: {e}")
        self.webhook_url = os.environ.get("KYC_SANDBOX_WEBHOOK_URL") or None
        self.delay_ms = common.env_int(PROG, "KYC_SANDBOX_CALLBACK_DELAY_MS", 1000)
        self.retry_base_ms = common.env_int(PROG, "KYC_SANDBOX_RETRY_BASE_MS", 500)
        self.max_attempts = common.env_int(PROG, "KYC_SANDBOX_MAX_ATTEMPTS", 6, minimum=1)
        try:
            self.timeout_s = float(os.environ.get("KYC_SANDBOX_WEBHOOK_TIMEOUT_S") or "10")
        except ValueError:
            raise SystemExit("kyc: KYC_SANDBOX_WEBHOOK_TIMEOUT_S is not a number")
        self.lock = threading.Lock()
        self.requests: dict[str, dict[str, Any]] = {}
        self.by_ref: dict[str, str] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.faults = self._no_faults()
        self.generation = 0  # bumped by reset(requests=True): stale timers/deliveries stop

    # -- faults ------------------------------------------------------------
    @staticmethod
    def _no_faults() -> dict[str, Any]:
        return {"down": False, "slow_ms": 0, "webhooks_paused": False}

    def reset(self, requests: bool) -> None:
        with self.lock:
            self.faults = self._no_faults()
            if requests:
                self.generation += 1
                self.requests.clear()
                self.by_ref.clear()
                self.deliveries.clear()

    def api_fault(self) -> ApiError | None:
        """Apply faults to one provider API call: sleep, then maybe an error to answer."""
        with self.lock:
            slow = self.faults["slow_ms"]
        if slow:
            time.sleep(slow / 1000.0)
        with self.lock:
            if self.faults["down"]:
                return ApiError(503, "provider_unavailable", "the KYC provider is down (sandbox fault)")
        return None

    # -- requests ----------------------------------------------------------
    def _settle(self, rec: dict[str, Any], force: bool = False) -> None:
        """Under the lock: make a pending request final once its delay has passed."""
        plan = rec["_plan"]
        if plan is None or rec["status"] != "pending":
            return
        if force or time.monotonic() >= rec["_decide_mono"]:
            rec["status"], rec["reason"] = plan
            rec["decided_at"] = rec["decides_at"]  # when it was decided, whoever noticed first
            rec["_plan"] = None

    @staticmethod
    def public(rec: dict[str, Any]) -> dict[str, Any]:
        return {"request_id": rec["request_id"], "client_ref": rec["client_ref"],
                "status": rec["status"], "reason": rec["reason"]}

    @staticmethod
    def stored(rec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rec.items() if not k.startswith("_")}

    def submit(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        if body.get("consent") != "Y":
            raise ApiError(400, "consent_required", 'consent must be "Y"')
        pan = body.get("pan")
        if not isinstance(pan, str) or not PAN_RE.fullmatch(pan):
            # never echo the value: it is personal data
            raise ApiError(400, "invalid_pan", "pan must be 5 upper-case letters, 4 digits and 1 upper-case letter")
        ref = body.get("client_ref")
        if not isinstance(ref, str) or not 1 <= len(ref) <= 64:
            raise ApiError(400, "invalid_request", "client_ref must be a string of 1 to 64 characters")
        for f in ("name", "dob", "callback_url"):
            if body.get(f) is not None and not isinstance(body[f], str):
                raise ApiError(400, "invalid_request", f"{f} must be a string")
        callback = body.get("callback_url") or None
        if callback is not None and not re.match(r"https?://[^/\s]", callback):
            raise ApiError(400, "invalid_request", "callback_url must be an http(s) URL")
        digits = pan[5:9]
        del pan  # keep only the digits

        with self.lock:
            known = self.by_ref.get(ref)
            if known is not None:
                return self.public(self._get(known))
            if digits == "5555":
                raise ApiError(503, "provider_unavailable", "the PAN registry is unavailable, try again later")
            now = time.time()
            rid = "kyc_req_" + secrets.token_hex(12)
            rec: dict[str, Any] = {
                "request_id": rid, "client_ref": ref, "status": "pending", "reason": None,
                "callback_url": callback, "pan_digits": digits,
                "has_name": bool(body.get("name")), "has_dob": bool(body.get("dob")),
                "created_at": now, "decides_at": now + self.delay_ms / 1000.0, "decided_at": None,
                "webhook": "scheduled",
                "_plan": ("verified", None), "_decide_mono": time.monotonic() + self.delay_ms / 1000.0,
            }
            if digits == "3333":
                rec.update(status="verified", decides_at=None, decided_at=now, webhook="none", _plan=None)
            elif digits == "2222":
                rec["_plan"] = ("rejected", "name_mismatch")
            elif digits == "4444":
                rec["webhook"] = "none"
            elif digits == "6666":
                rec.update(webhook="none", decides_at=None, _plan=None)
            self.requests[rid] = rec
            self.by_ref[ref] = rid
            out = self.public(rec)
            generation = self.generation
            needs_timer = rec["_plan"] is not None
        if needs_timer:
            t = threading.Timer(self.delay_ms / 1000.0, self._decide, args=(rid, generation))
            t.daemon = True
            t.name = f"decide-{rid[-8:]}"
            t.start()
        return out

    def _get(self, rid: str) -> dict[str, Any]:
        """Under the lock: the record, settled."""
        rec = self.requests.get(rid)
        if rec is None:
            raise ApiError(404, "not_found", "no such verification request")
        self._settle(rec)
        return rec

    def get(self, rid: str) -> dict[str, Any]:
        with self.lock:
            return self.public(self._get(rid))

    def get_by_ref(self, ref: str) -> dict[str, Any]:
        with self.lock:
            rid = self.by_ref.get(ref)
            if rid is None:
                raise ApiError(404, "not_found", "no verification request with this client_ref")
            return self.public(self._get(rid))

    def get_stored(self, rid: str) -> dict[str, Any]:
        with self.lock:
            return self.stored(self._get(rid))

    def complete(self, rid: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        status = req.get("status")
        if status not in ("verified", "rejected"):
            raise ApiError(400, "invalid_request", 'status must be "verified" or "rejected"')
        reason = req.get("reason", "name_mismatch" if status == "rejected" else None)
        if reason is not None and not isinstance(reason, str):
            raise ApiError(400, "invalid_request", "reason must be a string or null")
        with self.lock:
            rec = self._get(rid)
            rec.update(status=status, reason=reason, decided_at=time.time(), _plan=None)
            if rec["webhook"] == "scheduled":
                rec["webhook"] = "cancelled"
            return self.stored(rec)

    def _decide(self, rid: str, generation: int) -> None:
        """Timer thread: settle the request, then send its webhook if it has one."""
        with self.lock:
            rec = self.requests.get(rid)
            if rec is None or generation != self.generation:
                return
            self._settle(rec, force=True)
            if rec["webhook"] != "scheduled":
                return
            url = rec["callback_url"] or self.webhook_url
            snapshot = dict(rec)
            rec["webhook"] = "sending" if url else "skipped"
        body = self.webhook_body(snapshot, snapshot["status"], snapshot["reason"],
                                 snapshot["decided_at"] or time.time())
        webhook_id = new_webhook_id()
        if not url:
            self._log_delivery(rid, webhook_id, None, 0, "skipped", snapshot["status"],
                               error="no callback_url and no KYC_SANDBOX_WEBHOOK_URL")
            return
        ok = self._deliver(rid, webhook_id, url, body, snapshot["status"], generation)
        with self.lock:
            rec = self.requests.get(rid)
            if rec is not None and generation == self.generation:
                rec["webhook"] = "delivered" if ok else "failed"

    # -- webhooks ----------------------------------------------------------
    @staticmethod
    def webhook_body(rec: dict[str, Any], status: Any, reason: Any, at: float) -> bytes:
        return json.dumps({
            "type": EVENT_TYPE,
            "timestamp": rfc3339(at),
            "data": {"request_id": rec["request_id"], "client_ref": rec["client_ref"],
                     "status": status, "reason": reason},
        }, separators=(",", ":")).encode()

    def _log_delivery(self, rid: str, webhook_id: str, url: str | None, attempt: int, kind: str,
                      sent_status: Any, status: int | None = None, error: str | None = None) -> None:
        entry = {"request_id": rid, "webhook_id": webhook_id, "url": url, "attempt": attempt,
                 "status_code": status, "error": error, "kind": kind, "sent_status": sent_status,
                 "at": time.time()}
        with self.lock:
            self.deliveries.append(entry)
        log(f"webhook {rid} {webhook_id} -> {url} attempt {attempt} [{kind}]: "
            f"{status if status is not None else error}")

    def list_deliveries(self, rid: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.deliveries if rid is None or d["request_id"] == rid]

    def post(self, url: str, body: bytes, webhook_id: str, secret: str,
             timestamp: int | None = None) -> int:
        """POST a body once, signed now (or at ``timestamp``); the HTTP status, raises on connection error."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        status, _ = common.http_request(url, "POST", body, {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": ts,
            "webhook-signature": sign(secret, webhook_id, ts, body),
            "user-agent": "kyc-sandbox-webhooks/1",
        }, self.timeout_s)
        return status

    def _wait_unpaused(self, generation: int) -> bool:
        while True:
            with self.lock:
                if generation != self.generation:
                    return False
                if not self.faults["webhooks_paused"]:
                    return True
            time.sleep(0.05)

    def _deliver(self, rid: str, webhook_id: str, url: str, body: bytes, sent_status: str,
                 generation: int) -> bool:
        for attempt in range(1, self.max_attempts + 1):
            if not self._wait_unpaused(generation):
                return False
            try:
                status = self.post(url, body, webhook_id, self.secret)
                self._log_delivery(rid, webhook_id, url, attempt, "event", sent_status, status=status)
                if 200 <= status < 300:
                    return True
            except Exception as e:  # connection refused, timeout, reset, ...
                self._log_delivery(rid, webhook_id, url, attempt, "event", sent_status,
                                   error=f"{type(e).__name__}: {e}")
            if attempt < self.max_attempts:
                delay = self.retry_base_ms * (2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                time.sleep(delay / 1000.0)
        log(f"webhook {rid} {webhook_id} -> {url}: gave up after {self.max_attempts} attempts")
        return False

    def manual_deliver(self, rid: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        times = common.int_field(req, "times", 1, 1, 1000)
        concurrent = bool(req.get("concurrent", False))
        ts = req.get("timestamp")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int)):
            raise ApiError(400, "invalid_request", "timestamp must be an integer (unix seconds)")
        webhook_id = req.get("webhook_id") or new_webhook_id()
        if not isinstance(webhook_id, str):
            raise ApiError(400, "invalid_request", "webhook_id must be a string")
        secret = req.get("secret") or self.secret
        try:
            secret_key(secret)
        except ValueError as e:
            raise ApiError(400, "invalid_request", f"secret: {e}")
        with self.lock:
            rec = dict(self._get(rid))
        if "status" in req:
            status = req["status"]
            reason = req["reason"] if "reason" in req else ("name_mismatch" if status == "rejected" else None)
        else:
            status = rec["status"]
            reason = req["reason"] if "reason" in req else rec["reason"]
        url = req.get("url") or rec["callback_url"] or self.webhook_url
        if not isinstance(url, str):
            raise ApiError(400, "invalid_request", "no webhook target: no url given, no callback_url "
                           "and no KYC_SANDBOX_WEBHOOK_URL")
        body = self.webhook_body(rec, status, reason, time.time())
        results: list[Any] = [None] * times

        def send(i: int) -> None:
            try:
                code = self.post(url, body, webhook_id, secret, ts)
                results[i] = code
                self._log_delivery(rid, webhook_id, url, i + 1, "manual", status, status=code)
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
                results[i] = err
                self._log_delivery(rid, webhook_id, url, i + 1, "manual", status, error=err)

        common.run_all(times, concurrent, send)
        return {"webhook_id": webhook_id, "results": results}


def new_webhook_id() -> str:
    return "msg_" + secrets.token_hex(12)


# -- HTTP -------------------------------------------------------------------
REQUEST_RE = re.compile(r"^/v3/pan-verification/([A-Za-z0-9_-]{1,100})/?$")
SANDBOX_REQUEST_RE = re.compile(r"^/_sandbox/requests/([A-Za-z0-9_-]{1,100})(?:/(deliver|complete))?/?$")


class Handler(common.Handler):
    server_version = "KycSandbox/1"
    prog = PROG
    RESET_KEY = "requests"
    sandbox: Sandbox  # set on the class at start
    # the log never shows the query (it may carry a client_ref) nor bodies (they carry the PAN)

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        if path.startswith("/v3/"):
            self._api(method, path, query, raw)
        elif path.startswith("/_sandbox/"):
            self._control(method, path, query, raw)
        else:
            raise ApiError(404, "not_found", "no such endpoint")

    # provider API
    def _api(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        sb = self.sandbox
        fault = sb.api_fault()
        if fault:
            raise fault
        key = self.headers.get("x-karza-key")
        if key is None or not hmac.compare_digest(key.encode(), sb.api_key.encode()):
            raise ApiError(401, "unauthorized", "invalid or missing x-karza-key")
        if path.rstrip("/") == "/v3/pan-verification":
            if method == "POST":
                self._json(200, sb.submit(self._body_json(raw)))
            elif method == "GET":
                ref = (query.get("client_ref") or [""])[0]
                if not ref:
                    raise ApiError(400, "invalid_request", "client_ref query parameter is required")
                self._json(200, sb.get_by_ref(ref))
            else:
                raise ApiError(405, "method_not_allowed", "use POST or GET")
            return
        m = REQUEST_RE.match(path)
        if m:
            if method != "GET":
                raise ApiError(405, "method_not_allowed", "use GET")
            self._json(200, sb.get(m.group(1)))
            return
        raise ApiError(404, "not_found", "no such endpoint")

    # sandbox control API
    def _control(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        sb = self.sandbox
        p = path.rstrip("/")
        if self._basic_control(method, p, raw):
            return
        if p == "/_sandbox/deliveries" and method == "GET":
            rid = (query.get("request_id") or [None])[0]
            self._json(200, sb.list_deliveries(rid))
        elif p == "/_sandbox/sign" and method == "POST":
            self._json(200, {"signature": self._sign(self._body_json(raw))})
        else:
            m = SANDBOX_REQUEST_RE.match(path)
            if not m:
                raise ApiError(404, "not_found", "no such sandbox endpoint")
            rid, action = m.group(1), m.group(2)
            if action is None and method == "GET":
                self._json(200, sb.get_stored(rid))
            elif method != "POST" or action is None:
                raise ApiError(405, "method_not_allowed", "use POST")
            elif action == "deliver":
                self._json(200, sb.manual_deliver(rid, self._body_json(raw)))
            else:  # complete
                self._json(200, sb.complete(rid, self._body_json(raw)))

    def _sign(self, req: Any) -> str:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        wid, ts, body = req.get("webhook_id"), req.get("timestamp"), req.get("body")
        if not isinstance(wid, str) or not wid:
            raise ApiError(400, "invalid_request", "webhook_id must be a non-empty string")
        if isinstance(ts, bool) or not (isinstance(ts, int) or (isinstance(ts, str) and ts.isdigit())):
            raise ApiError(400, "invalid_request", "timestamp must be an integer (unix seconds)")
        if not isinstance(body, str):
            raise ApiError(400, "invalid_request", "body must be the payload as a string")
        try:
            return sign(req.get("secret") or self.sandbox.secret, wid, ts, body)
        except ValueError as e:
            raise ApiError(400, "invalid_request", f"secret: {e}")


def main(argv: list[str] | None = None) -> int:
    return common.serve(
        argv, PROG, "Karza-like KYC (PAN verification) provider sandbox",
        int(os.environ.get("PURSE_KYC_PORT") or "4590"), Handler, lambda args: Sandbox(),
        lambda sb: f"callback delay {sb.delay_ms} ms, webhook url {'set' if sb.webhook_url else 'unset'}")


if __name__ == "__main__":
    sys.exit(main())
