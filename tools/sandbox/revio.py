#!/usr/bin/env python3
"""Local sandbox of the Revio payment provider (redirect payment flow, EFT payouts).

Standard library HTTP server plus ``cryptography`` for RSA. All state lives in
memory behind one lock and is lost on restart.

Usage: revio.py [--host 127.0.0.1] [--port $PURSE_REVIO_PORT|4580]

Environment
  REVIO_SANDBOX_API_KEY        accepted Bearer key (default ``sandbox-revio-key``)
  REVIO_SANDBOX_BRAND_ID       accepted brand_id (default ``sandbox-brand``)
  REVIO_SANDBOX_WEBHOOK_URL    brand-level webhook URL; every event is POSTed here
  REVIO_SANDBOX_RETRY_BASE_MS  webhook retry base delay (default 500)
  REVIO_SANDBOX_MAX_ATTEMPTS   webhook attempts per delivery, first included (default 8)
  REVIO_SANDBOX_WEBHOOK_TIMEOUT_S  timeout of one webhook POST (default 10)
  REVIO_SANDBOX_PUBLIC_URL     base of checkout_url (default http://<host>:<port>)
  REVIO_SANDBOX_PAYOUT_DELAY_MS  time from a payout's creation until its outcome
                               (paid / unpaid / rejected) is decided (default 1000)
  REVIO_SANDBOX_PAYOUT_RETURN_DELAY_MS  time from a returning payout being paid
                               until it is returned (default 3000)
  REVIO_SANDBOX_KEY_FILE       optional PEM file for the signing key: loaded if it
                               exists, else generated and written there (keeps the
                               public key stable across restarts). Unset: a fresh
                               RSA-2048 key at every start.

Merchant API (like https://gate.reviopay.com/api/v1/)
  Auth ``Authorization: Bearer <key>``; wrong or missing -> 401 JSON.
  POST /api/v1/purchases/         body {brand_id, client:{email},
      purchase:{currency, products:[{name, price, quantity?}]}, success_redirect?,
      failure_redirect?, success_callback?, reference?}. ``price`` is an integer in
      minor units (cents), ``quantity`` an optional positive integer (default 1).
      brand_id must match (400), bad input -> 400. Answers 201 with the purchase:
      {id, type:"purchase", status:"created", brand_id, client, purchase:{currency,
      products, total}, reference, success_redirect, failure_redirect,
      success_callback, checkout_url, created_on, updated_on} (unix seconds).
  GET  /api/v1/purchases/<id>/    the purchase, 404 JSON if unknown.
  POST /api/v1/purchases/<id>/cancel/   status created -> cancelled (the payer can
      no longer pay); answers the purchase; 409 if not created. No webhook.
  POST /api/v1/purchases/<id>/refund/   status paid -> refunded (full refund);
      answers the purchase; 409 if not paid. Webhook ``purchase.refunded``.
  GET  /api/v1/public_key/        PEM (SubjectPublicKeyInfo) of the signing key,
      ``text/plain``, no auth needed.
  Errors are JSON ``{"error": code, "message": text, "fields"?: {path: text}}``.
  Statuses: created, paid, error (payment failed), cancelled, expired, refunded,
  chargeback. A transition from the wrong status answers 409 ``conflict``.

Payout API (EFT payouts to South African bank accounts; same auth, same error
shape, and the faults down / latency_ms / fail_next_api_calls apply as to every
/api/ call)
  POST /api/v1/payouts/   body {"brand_id", "reference": str of 1..64 chars (our
      id), "amount": int minor units > 0, "currency": "ZAR", "recipient":
      {"account_holder": non-empty str, "account_number": str of 6..16 digits,
      "branch_code": str of 6 digits, "account_type": "cheque"|"savings"|
      "transmission"}, "callback_url"?: http(s) URL (null = absent)}.
      Checked in this order: body not a JSON object -> 400 ``invalid_request``;
      brand_id wrong -> 400 ``invalid_brand``; reference missing or bad -> 400
      ``validation_error`` (fields.reference). Then IDEMPOTENT BY REFERENCE: a
      known reference answers 200 with that stored payout (its current status),
      whatever the rest of the body says (even invalid), and schedules nothing
      new; concurrent first POSTs make one payout. Otherwise the other fields are
      validated (400 ``validation_error``, message "invalid payout", ``fields``
      {path: text}, e.g. "recipient.account_number"; no message ever echoes a
      value) and a new payout is answered with 201, status "pending".
  GET  /api/v1/payouts/<id>/          the payout; 404 ``not_found`` if unknown.
  GET  /api/v1/payouts/?reference=<ref>  {"results": [payout]} or {"results": []};
      400 ``invalid_request`` without reference.
  Payout object:
      {"id": uuid, "type": "payout", "status": "pending"|"paid"|"unpaid"|
       "rejected"|"returned", "reference", "amount", "currency": "ZAR",
       "recipient": {"account_holder", "account_number_masked": "xxxxx" + the
       last 4 digits (always 5 x, whatever the number's length), "branch_code",
       "account_type"}, "failure_reason": null|str, "created_on", "updated_on"}
      (unix seconds). callback_url is not part of it (see the control API).
  The full account number is never stored, answered, logged nor sent: at
  creation only its last 4 digits and the rule it selects are kept.
  Outcome by account number (magic accounts of the sandbox bank), decided
  PAYOUT_DELAY_MS after creation:
      110000001      -> paid
      110000002      -> unpaid,   failure_reason "account_unpaid"
      910000001      -> rejected, failure_reason "account_rejected"
      110000003      -> paid, then RETURN_DELAY_MS later -> returned,
                        failure_reason "returned_by_bank"
      any other      -> paid
  Status is also settled lazily: once a transition's time has passed every read
  (API, control API, idempotent replay) shows it, even if the background thread
  has not run yet; updated_on is then the time the transition was due.

Payout webhooks
  Every transition (pending -> paid / unpaid / rejected, paid -> returned, and
  each /settle) POSTs the payout JSON (as left by that transition) plus
  ``"event_type"``: ``payout.paid``, ``payout.unpaid``, ``payout.rejected`` or
  ``payout.returned``, to the payout's callback_url (if set) and to
  REVIO_SANDBOX_WEBHOOK_URL (if set), each an independent delivery. Compact JSON,
  signed, retried, logged and subject to lose_webhooks / duplicate_webhooks
  exactly as purchase webhooks (below); delivery log entries carry ``payout_id``
  instead of ``purchase_id``. When a read settled a transition first, its
  webhook is still sent at the transition's time (exactly once).

Hosted checkout (what the payer's browser sees)
  GET  /p/<id>/          HTML page with amount, currency and "Pay" / "Decline".
  POST /p/<id>/pay       status created -> paid
  POST /p/<id>/decline   status created -> error (Revio's failed state)
  Only from ``created``; otherwise 409 page. Afterwards 303 to success_redirect /
  failure_redirect when set, else a result page.

Webhooks
  On these transitions the purchase JSON (with its new status) plus ``event_type``
  is POSTed, from a background thread, to the purchase's success_callback (if
  set) and to REVIO_SANDBOX_WEBHOOK_URL (if set), each an independent delivery:
    pay -> ``purchase.paid``            decline -> ``purchase.payment_failure``
    refund -> ``purchase.refunded``     chargeback -> ``purchase.chargeback``
  cancel and expire send NO webhook: the merchant cancelled itself, and expiry is
  silent on purpose (providers like Revio do not always notify it), so only
  reading the purchase (reconciliation) finds it.
  Headers: ``Content-Type: application/json`` and
  ``X-Signature: base64(RSA PKCS#1 v1.5 SHA-256 signature over the raw body)``.
  A connection error or non-2xx answer is retried after
  base * 2^n ms (n = 0, 1, ...) times a random jitter factor in [0.8, 1.2], up to
  MAX_ATTEMPTS attempts. Every attempt is written to the delivery log.

Sandbox control API (no auth, JSON in and out, only under /_sandbox/)
  GET  /_sandbox/health                    {"ok": true}
  POST /_sandbox/purchases/<id>/pay        like clicking Pay; the purchase JSON (409 if not created)
  POST /_sandbox/purchases/<id>/decline    like clicking Decline
  POST /_sandbox/purchases/<id>/refund     paid -> refunded, webhook ``purchase.refunded``
        (as if refunded in Revio's dashboard; the purchase JSON, 409 if not paid)
  POST /_sandbox/purchases/<id>/chargeback paid -> chargeback, webhook
        ``purchase.chargeback`` (the payer's bank reversed it; 409 if not paid)
  POST /_sandbox/purchases/<id>/expire     created -> expired, NO webhook (the
        checkout timed out; 409 if not created)
  POST /_sandbox/purchases/<id>/deliver    {"event_type"?, "times"?: 1, "concurrent"?: false,
        "status"?: override, "url"?: target} (re)send the webhook ``times`` times to
        every target (or only ``url``), synchronously, no retries, no faults; with
        ``concurrent`` all sends are released at once by a barrier. ``status``
        overrides the status in the sent body only (stale / out-of-order events);
        stored state is unchanged. ``event_type`` defaults from the stored status
        (paid, error, refunded, chargeback; required for other statuses).
        Answers {"status_codes": [...], "results": [{url, status_code | error}]};
        a connection error shows as null in status_codes.
  POST /_sandbox/purchases/<id>/sign       any raw body -> {"signature": base64}
        (also POST /_sandbox/sign)
  GET  /_sandbox/payouts/<id>              the payout (settled lazily, no auth, no
        faults) plus "sandbox": {"rule": "paid"|"unpaid"|"rejected"|
        "paid_then_returned"|"default", "callback_url", "pending_transitions":
        [{"status", "failure_reason", "at" (unix seconds, float)}]}; 404 if unknown.
  GET  /_sandbox/payouts[?reference=]      {"results": [...]} of that shape: the
        payout with this reference (or none), all payouts without reference.
  POST /_sandbox/payouts/<id>/settle       {"status": "paid"|"unpaid"|"rejected"|
        "returned", "failure_reason"?: str|null} sets that state now, from any
        state, cancels the remaining automatic transitions (e.g. a 110000003
        payout settled "paid" is not returned later) and sends the webhook
        ``payout.<status>`` (retries and faults as automatic ones). failure_reason
        defaults per status: null, "account_unpaid", "account_rejected",
        "returned_by_bank". Answers the payout in the /_sandbox/payouts shape;
        400 on a bad status or failure_reason.
  POST /_sandbox/payouts/<id>/deliver      exactly like the purchase /deliver:
        {"event_type"?, "times"?: 1, "concurrent"?: false, "status"?: override,
        "url"?: target}; targets callback_url and REVIO_SANDBOX_WEBHOOK_URL;
        event_type defaults from the stored status (``payout.<status>``; required
        while pending). Answers {"payout_id", "event_type", "status_codes": [...],
        "results": [{url, status_code | error}]}.
  GET  /_sandbox/faults                    current faults
  POST /_sandbox/faults                    partial update of
        {"down": bool, "latency_ms": int, "lose_webhooks": int,
         "duplicate_webhooks": int, "fail_next_api_calls": int,
         "payout_timeout_after_accept": int}
        down: every /api/ call answers 503; latency_ms: every /api/ call sleeps
        first; lose_webhooks: the next N webhook deliveries (one event to one
        target = one delivery) are dropped, never sent nor retried, logged with
        lost=true; duplicate_webhooks: while set, every delivery is sent N extra
        times (independent copies, each with its own retries); fail_next_api_calls:
        the next N /api/ calls answer 500; payout_timeout_after_accept: the next N
        successful POST /api/v1/payouts/ calls (201 new or 200 idempotent replay;
        errors do not count) create and schedule the payout normally, then sleep
        15 s before answering (the client times out after Revio accepted).
        Answers the faults after the update.
  POST /_sandbox/reset                     clears faults; with {"purchases": true}
        also forgets all purchases, all payouts and the delivery log (the
        forgotten payouts' scheduled transitions and webhook retries then stop).
  GET  /_sandbox/deliveries[?purchase_id=][&payout_id=] delivery log, oldest
        first: {purchase_id, event_type, url, attempt, status_code, error, lost,
        kind, at} for purchases, {payout_id, event_type, ...the same} for
        payouts; kind is "event", "duplicate" or "manual". Each parameter keeps
        only entries of that purchase / payout; without both, all entries.
  GET  /_sandbox/purchases/<id>            the purchase (no auth, no faults).

Logging: one line per request (method, path without query, status) and one per
webhook attempt; never bodies, signatures nor account numbers.
"""

from __future__ import annotations

import base64
import html
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, wherever we are started from
import common  # noqa: E402
from common import ApiError  # noqa: E402

PROG = "revio"
ZERO_DECIMAL_CURRENCIES = {"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"}

# action -> (required status, new status, webhook event or None)
TRANSITIONS: dict[str, tuple[str, str, str | None]] = {
    "pay": ("created", "paid", "purchase.paid"),
    "decline": ("created", "error", "purchase.payment_failure"),
    "cancel": ("created", "cancelled", None),
    "expire": ("created", "expired", None),  # Revio does not always notify expiry
    "refund": ("paid", "refunded", "purchase.refunded"),
    "chargeback": ("paid", "chargeback", "purchase.chargeback"),
}
# stored status -> the event a manual /deliver sends by default
STATUS_EVENTS = {to: event for _, to, event in TRANSITIONS.values() if event}

# -- payouts ------------------------------------------------------------------
# magic account numbers of the sandbox bank -> rule; any other number: "default"
PAYOUT_ACCOUNT_RULES = {
    "110000001": "paid",
    "110000002": "unpaid",
    "910000001": "rejected",
    "110000003": "paid_then_returned",
}
# rule -> automatic transitions: (status, failure_reason, delay key). "decide" is
# PAYOUT_DELAY_MS after creation, "return" RETURN_DELAY_MS after that.
PAYOUT_PLANS: dict[str, list[tuple[str, str | None, str]]] = {
    "paid": [("paid", None, "decide")],
    "unpaid": [("unpaid", "account_unpaid", "decide")],
    "rejected": [("rejected", "account_rejected", "decide")],
    "paid_then_returned": [("paid", None, "decide"), ("returned", "returned_by_bank", "return")],
    "default": [("paid", None, "decide")],
}
# final status -> failure_reason that /_sandbox/payouts/<id>/settle sets by default
PAYOUT_REASONS: dict[str, str | None] = {
    "paid": None, "unpaid": "account_unpaid", "rejected": "account_rejected", "returned": "returned_by_bank",
}
PAYOUT_STATUS_EVENTS = {s: f"payout.{s}" for s in PAYOUT_REASONS}
PAYOUT_ACCOUNT_TYPES = ("cheque", "savings", "transmission")
PAYOUT_FIELDS = ("id", "type", "status", "reference", "amount", "currency", "recipient",
                 "failure_reason", "created_on", "updated_on")
# how long a POST /api/v1/payouts/ hit by the payout_timeout_after_accept fault sleeps
PAYOUT_TIMEOUT_SLEEP_S = 15.0


def log(msg: str) -> None:
    common.log(PROG, msg)


class Sandbox(common.FaultsMixin):
    """All sandbox state and behaviour; HTTP-agnostic except for webhook sending."""

    BOOLEAN_FAULTS = ("down",)

    def __init__(self, public_url: str):
        self.public_url = public_url.rstrip("/")
        self.api_key = os.environ.get("REVIO_SANDBOX_API_KEY", "sandbox-revio-key")
        self.brand_id = os.environ.get("REVIO_SANDBOX_BRAND_ID", "sandbox-brand")
        self.webhook_url = os.environ.get("REVIO_SANDBOX_WEBHOOK_URL") or None
        self.retry_base_ms = int(os.environ.get("REVIO_SANDBOX_RETRY_BASE_MS", "500"))
        self.max_attempts = max(1, int(os.environ.get("REVIO_SANDBOX_MAX_ATTEMPTS", "8")))
        self.timeout_s = float(os.environ.get("REVIO_SANDBOX_WEBHOOK_TIMEOUT_S", "10"))
        self.key = self._load_key(os.environ.get("REVIO_SANDBOX_KEY_FILE") or None)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.lock = threading.Lock()
        self.purchases: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.faults = self._no_faults()
        self.payout_delay_ms = max(0, int(os.environ.get("REVIO_SANDBOX_PAYOUT_DELAY_MS") or "1000"))
        self.payout_return_delay_ms = max(0, int(os.environ.get("REVIO_SANDBOX_PAYOUT_RETURN_DELAY_MS") or "3000"))
        self.payouts: dict[str, dict[str, Any]] = {}
        self.payouts_by_ref: dict[str, str] = {}
        # bumped by reset(purchases=True): stale payout plans and payout webhook retries stop
        self.generation = 0

    # -- keys --------------------------------------------------------------
    @staticmethod
    def _load_key(path: str | None) -> rsa.RSAPrivateKey:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if path:
            with open(path, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return key

    def sign(self, body: bytes) -> str:
        sig = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(sig).decode("ascii")

    # -- faults ------------------------------------------------------------
    @staticmethod
    def _no_faults() -> dict[str, Any]:
        return {"down": False, "latency_ms": 0, "lose_webhooks": 0,
                "duplicate_webhooks": 0, "fail_next_api_calls": 0,
                "payout_timeout_after_accept": 0}

    def reset(self, purchases: bool) -> None:
        with self.lock:
            self.faults = self._no_faults()
            if purchases:
                self.purchases.clear()
                self.deliveries.clear()
                self.generation += 1
                self.payouts.clear()
                self.payouts_by_ref.clear()

    def api_fault(self) -> ApiError | None:
        """Apply faults to one /api/ call: sleep, then maybe an error to answer."""
        with self.lock:
            latency = self.faults["latency_ms"]
        if latency:
            time.sleep(latency / 1000.0)
        with self.lock:
            if self.faults["down"]:
                return ApiError(503, "service_unavailable", "Revio is down (sandbox fault)")
            if self.faults["fail_next_api_calls"] > 0:
                self.faults["fail_next_api_calls"] -= 1
                return ApiError(500, "internal_error", "internal error (sandbox fault)")
        return None

    # -- purchases ---------------------------------------------------------
    def create_purchase(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        fields: dict[str, str] = {}
        if body.get("brand_id") != self.brand_id:
            raise ApiError(400, "invalid_brand", "unknown brand_id", {"brand_id": "does not match this API key's brand"})
        client = body.get("client")
        email = client.get("email") if isinstance(client, dict) else None
        if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            fields["client.email"] = "a valid email is required"
        purchase = body.get("purchase")
        if not isinstance(purchase, dict):
            fields["purchase"] = "required object"
            purchase = {}
        currency = purchase.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            fields["purchase.currency"] = "a 3-letter upper-case ISO 4217 code is required"
        products = purchase.get("products")
        total = 0
        clean_products: list[dict[str, Any]] = []
        if not isinstance(products, list) or not products:
            fields["purchase.products"] = "at least one product is required"
        else:
            for i, p in enumerate(products):
                where = f"purchase.products[{i}]"
                if not isinstance(p, dict):
                    fields[where] = "must be an object"
                    continue
                name, price, qty = p.get("name"), p.get("price"), p.get("quantity", 1)
                if not isinstance(name, str) or not name.strip():
                    fields[where + ".name"] = "required non-empty string"
                if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
                    fields[where + ".price"] = "must be a positive integer in minor units"
                if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                    fields[where + ".quantity"] = "must be a positive integer"
                if isinstance(price, int) and isinstance(qty, int):
                    total += price * qty
                clean_products.append({"name": name, "price": price, "quantity": qty})
        for f in ("success_redirect", "failure_redirect", "success_callback"):
            v = body.get(f)
            if v is not None and (not isinstance(v, str) or not re.match(r"https?://", v)):
                fields[f] = "must be an http(s) URL"
        ref = body.get("reference")
        if ref is not None and not isinstance(ref, str):
            fields["reference"] = "must be a string"
        if fields:
            raise ApiError(400, "validation_error", "invalid purchase", fields)

        now = int(time.time())
        pid = str(uuid.uuid4())
        p = {
            "id": pid,
            "type": "purchase",
            "status": "created",
            "brand_id": self.brand_id,
            "client": {"email": email},
            "purchase": {"currency": currency, "products": clean_products, "total": total},
            "reference": ref,
            "success_redirect": body.get("success_redirect"),
            "failure_redirect": body.get("failure_redirect"),
            "success_callback": body.get("success_callback"),
            "checkout_url": f"{self.public_url}/p/{pid}/",
            "created_on": now,
            "updated_on": now,
        }
        with self.lock:
            self.purchases[pid] = p
            return json.loads(json.dumps(p))

    def get_purchase(self, pid: str) -> dict[str, Any]:
        with self.lock:
            p = self.purchases.get(pid)
            if p is None:
                raise ApiError(404, "not_found", "no such purchase")
            return json.loads(json.dumps(p))

    def transition(self, pid: str, action: str) -> dict[str, Any]:
        """Apply one of TRANSITIONS to a purchase; schedules its webhooks, if any."""
        from_status, new_status, event = TRANSITIONS[action]
        with self.lock:
            p = self.purchases.get(pid)
            if p is None:
                raise ApiError(404, "not_found", "no such purchase")
            if p["status"] != from_status:
                if from_status == "created":
                    raise ApiError(409, "conflict", f"purchase is already {p['status']}")
                raise ApiError(409, "conflict", f"purchase is {p['status']}, not {from_status}")
            p["status"] = new_status
            p["updated_on"] = int(time.time())
            snapshot = json.loads(json.dumps(p))
        if event:
            self.emit(snapshot, event)
        return snapshot

    # -- webhooks ----------------------------------------------------------
    def targets(self, purchase: dict[str, Any]) -> list[str]:
        return [u for u in (purchase.get("success_callback"), self.webhook_url) if u]

    def webhook_body(self, purchase: dict[str, Any], event_type: str) -> bytes:
        return json.dumps({**purchase, "event_type": event_type}, separators=(",", ":")).encode()

    def _log_delivery(self, pid: str, event: str, url: str, attempt: int, kind: str,
                      status: int | None = None, error: str | None = None, lost: bool = False,
                      id_key: str = "purchase_id") -> None:
        entry = {id_key: pid, "event_type": event, "url": url, "attempt": attempt,
                 "status_code": status, "error": error, "lost": lost, "kind": kind, "at": time.time()}
        with self.lock:
            self.deliveries.append(entry)
        outcome = "lost (fault)" if lost else (status if status is not None else error)
        log(f"webhook {event} {pid} -> {url} attempt {attempt} [{kind}]: {outcome}")

    def list_deliveries(self, pid: str | None, payout_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.deliveries
                    if (pid is None or d.get("purchase_id") == pid)
                    and (payout_id is None or d.get("payout_id") == payout_id)]

    def post(self, url: str, body: bytes) -> int:
        """POST a signed body once; returns the HTTP status, raises on connection error."""
        status, _ = common.http_request(url, "POST", body, {
            "Content-Type": "application/json",
            "X-Signature": self.sign(body),
            "User-Agent": "revio-sandbox-webhooks/1",
        }, self.timeout_s)
        return status

    def emit(self, purchase: dict[str, Any], event: str) -> None:
        """Schedule the deliveries of one purchase event to every target, applying faults."""
        self._emit(purchase["id"], "purchase_id", self.targets(purchase),
                   self.webhook_body(purchase, event), event)

    def _emit(self, oid: str, id_key: str, targets: list[str], body: bytes, event: str,
              generation: int | None = None) -> None:
        """Schedule the deliveries of one event (body) to every target, applying faults."""
        for url in targets:
            with self.lock:
                lose = self.faults["lose_webhooks"] > 0
                if lose:
                    self.faults["lose_webhooks"] -= 1
                extra = self.faults["duplicate_webhooks"]
            if lose:
                self._log_delivery(oid, event, url, 1, "event", error="lost", lost=True, id_key=id_key)
                continue
            for i in range(1 + extra):
                kind = "event" if i == 0 else "duplicate"
                threading.Thread(target=self._deliver, args=(oid, event, url, body, kind, id_key, generation),
                                 daemon=True, name=f"webhook-{oid[:8]}").start()

    def _deliver(self, pid: str, event: str, url: str, body: bytes, kind: str,
                 id_key: str = "purchase_id", generation: int | None = None) -> None:
        """Send one delivery with retries. With ``generation`` (payouts) it stops quietly
        once /_sandbox/reset forgot the payouts."""
        for attempt in range(1, self.max_attempts + 1):
            if generation is not None and self._stale(generation):
                return
            try:
                status = self.post(url, body)
                self._log_delivery(pid, event, url, attempt, kind, status=status, id_key=id_key)
                if 200 <= status < 300:
                    return
            except Exception as e:  # connection refused, timeout, reset, ...
                self._log_delivery(pid, event, url, attempt, kind, error=f"{type(e).__name__}: {e}",
                                   id_key=id_key)
            if attempt < self.max_attempts:
                delay = self.retry_base_ms * (2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                time.sleep(delay / 1000.0)
        log(f"webhook {event} {pid} -> {url}: gave up after {self.max_attempts} attempts")

    def _stale(self, generation: int) -> bool:
        with self.lock:
            return generation != self.generation

    def manual_deliver(self, pid: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        purchase = self.get_purchase(pid)
        return self._manual_deliver(
            purchase, req, "purchase_id", STATUS_EVENTS, self.targets, self.webhook_body,
            "event_type is required for a purchase in this status",
            "no webhook target: no success_callback, no REVIO_SANDBOX_WEBHOOK_URL and no url given")

    def _manual_deliver(self, obj: dict[str, Any], req: dict[str, Any], id_key: str,
                        status_events: dict[str, str], targets_of: Any, body_of: Any,
                        no_event_msg: str, no_target_msg: str) -> dict[str, Any]:
        """/deliver for a purchase or a payout (``obj`` is a copy, free to modify)."""
        pid = obj["id"]
        times = common.int_field(req, "times", 1, 1, 1000)
        concurrent = bool(req.get("concurrent", False))
        # default event from the stored status, before any override
        event = req.get("event_type") or status_events.get(obj["status"])
        if "status" in req:
            if not isinstance(req["status"], str):
                raise ApiError(400, "invalid_request", "status must be a string")
            obj["status"] = req["status"]
        if not isinstance(event, str):
            raise ApiError(400, "invalid_request", no_event_msg)
        url = req.get("url")
        targets = [url] if isinstance(url, str) and url else targets_of(obj)
        if not targets:
            raise ApiError(400, "invalid_request", no_target_msg)
        body = body_of(obj, event)
        jobs = [t for _ in range(times) for t in targets]
        results: list[dict[str, Any]] = [{} for _ in jobs]

        def send(i: int) -> None:
            target = jobs[i]
            try:
                status = self.post(target, body)
                results[i] = {"url": target, "status_code": status}
                self._log_delivery(pid, event, target, 1, "manual", status=status, id_key=id_key)
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
                results[i] = {"url": target, "status_code": None, "error": err}
                self._log_delivery(pid, event, target, 1, "manual", error=err, id_key=id_key)

        common.run_all(len(jobs), concurrent, send)
        return {id_key: pid, "event_type": event,
                "status_codes": [r.get("status_code") for r in results], "results": results}

    # -- payouts -----------------------------------------------------------
    def create_payout(self, body: Any) -> tuple[dict[str, Any], bool]:
        """POST /api/v1/payouts/: (payout, created). created=False: an idempotent replay."""
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        if body.get("brand_id") != self.brand_id:
            raise ApiError(400, "invalid_brand", "unknown brand_id", {"brand_id": "does not match this API key's brand"})
        ref = body.get("reference")
        if not isinstance(ref, str) or not 1 <= len(ref) <= 64:
            raise ApiError(400, "validation_error", "invalid payout",
                           {"reference": "a string of 1 to 64 characters is required"})
        # idempotent by reference, whatever the rest of the body says
        with self.lock:
            known = self.payouts_by_ref.get(ref)
            if known is not None:
                return self._payout_public(self._get_payout(known)), False

        fields: dict[str, str] = {}
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            fields["amount"] = "must be a positive integer in minor units (cents)"
        if body.get("currency") != "ZAR":
            fields["currency"] = 'must be "ZAR" (EFT payouts to South African bank accounts)'
        recipient = body.get("recipient")
        if not isinstance(recipient, dict):
            fields["recipient"] = "required object"
            recipient = {}
        holder = recipient.get("account_holder")
        if not isinstance(holder, str) or not holder.strip():
            fields["recipient.account_holder"] = "required non-empty string"
        # Never echo, store nor log the account number: keep only its last 4
        # digits and which magic rule it selects.
        number = recipient.get("account_number")
        last4, rule = "", "default"
        if not isinstance(number, str) or not re.fullmatch(r"[0-9]{6,16}", number):
            fields["recipient.account_number"] = "must be a string of 6 to 16 digits"
        else:
            last4, rule = number[-4:], PAYOUT_ACCOUNT_RULES.get(number, "default")
        del number
        branch = recipient.get("branch_code")
        if not isinstance(branch, str) or not re.fullmatch(r"[0-9]{6}", branch):
            fields["recipient.branch_code"] = "must be a string of 6 digits"
        account_type = recipient.get("account_type")
        if account_type not in PAYOUT_ACCOUNT_TYPES:
            fields["recipient.account_type"] = 'must be "cheque", "savings" or "transmission"'
        callback = body.get("callback_url")
        if callback is not None and (not isinstance(callback, str) or not re.match(r"https?://[^/\s]", callback)):
            fields["callback_url"] = "must be an http(s) URL"
        if fields:
            raise ApiError(400, "validation_error", "invalid payout", fields)

        now, mono = time.time(), time.monotonic()
        decide_s = self.payout_delay_ms / 1000.0
        offsets = {"decide": decide_s, "return": decide_s + self.payout_return_delay_ms / 1000.0}
        steps = [{"status": st, "failure_reason": reason, "due_mono": mono + offsets[when],
                  "due_wall": now + offsets[when], "applied": False, "emitted": False}
                 for st, reason, when in PAYOUT_PLANS[rule]]
        rec: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": "payout",
            "status": "pending",
            "reference": ref,
            "amount": amount,
            "currency": "ZAR",
            "recipient": {"account_holder": holder, "account_number_masked": "xxxxx" + last4,
                          "branch_code": branch, "account_type": account_type},
            "failure_reason": None,
            "created_on": int(now),
            "updated_on": int(now),
            "_rule": rule,
            "_callback_url": callback,
            "_steps": steps,
            "_plan": 0,  # bumped by settle: the running plan thread stops
        }
        with self.lock:
            known = self.payouts_by_ref.get(ref)  # a concurrent first POST won the race
            if known is not None:
                return self._payout_public(self._get_payout(known)), False
            self.payouts[rec["id"]] = rec
            self.payouts_by_ref[ref] = rec["id"]
            out = self._payout_public(rec)
            generation = self.generation
        self._start_payout_plan(rec["id"], 0, generation)
        return out, True

    def _start_payout_plan(self, payout_id: str, plan: int, generation: int) -> None:
        threading.Thread(target=self._run_payout_plan, args=(payout_id, plan, generation),
                         daemon=True, name=f"payout-{payout_id[:8]}").start()

    def _live_payout(self, payout_id: str, plan: int, generation: int) -> dict[str, Any] | None:
        """Under the lock: the payout if its automatic plan still runs, else None."""
        rec = self.payouts.get(payout_id)
        if rec is None or generation != self.generation or rec["_plan"] != plan:
            return None
        return rec

    def _run_payout_plan(self, payout_id: str, plan: int, generation: int) -> None:
        """Background thread: apply each automatic transition at its time and send its webhook
        (unless a read already applied it: then only the webhook is still owed)."""
        i = 0
        while True:
            with self.lock:
                rec = self._live_payout(payout_id, plan, generation)
                if rec is None or i >= len(rec["_steps"]):
                    return
                due = rec["_steps"][i]["due_mono"]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.lock:
                rec = self._live_payout(payout_id, plan, generation)
                if rec is None:
                    return
                self._settle_payout(rec, upto=i)
                step = rec["_steps"][i]
                owed = not step["emitted"]
                step["emitted"] = True
                # the payout as this transition left it (a read may have gone further already)
                snapshot = {**self._payout_public(rec), "status": step["status"],
                            "failure_reason": step["failure_reason"], "updated_on": int(step["due_wall"])}
                callback = rec["_callback_url"]
            if owed:
                self._emit_payout(snapshot, callback, PAYOUT_STATUS_EVENTS[step["status"]], generation)
            i += 1

    @staticmethod
    def _settle_payout(rec: dict[str, Any], upto: int = -1) -> None:
        """Under the lock: apply the automatic transitions that are due (and all up to index
        ``upto``), so reads show the final state even before the background thread ran."""
        now = time.monotonic()
        for i, step in enumerate(rec["_steps"]):
            if step["applied"]:
                continue
            if i > upto and now < step["due_mono"]:
                break
            rec["status"], rec["failure_reason"] = step["status"], step["failure_reason"]
            rec["updated_on"] = int(step["due_wall"])  # when it happened, whoever noticed first
            step["applied"] = True

    @staticmethod
    def _payout_public(rec: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({k: rec[k] for k in PAYOUT_FIELDS}))

    def _payout_control(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Under the lock: the payout plus what only the sandbox knows (never the account number)."""
        return {**self._payout_public(rec), "sandbox": {
            "rule": rec["_rule"],
            "callback_url": rec["_callback_url"],
            "pending_transitions": [{"status": s["status"], "failure_reason": s["failure_reason"],
                                     "at": s["due_wall"]} for s in rec["_steps"] if not s["applied"]],
        }}

    def _get_payout(self, payout_id: str) -> dict[str, Any]:
        """Under the lock: the stored record, settled."""
        rec = self.payouts.get(payout_id)
        if rec is None:
            raise ApiError(404, "not_found", "no such payout")
        self._settle_payout(rec)
        return rec

    def get_payout(self, payout_id: str, control: bool = False) -> dict[str, Any]:
        with self.lock:
            rec = self._get_payout(payout_id)
            return self._payout_control(rec) if control else self._payout_public(rec)

    def find_payouts(self, ref: str | None, control: bool = False) -> dict[str, Any]:
        """{"results": [...]}: the payout with this reference (0 or 1), or all (ref None)."""
        with self.lock:
            if ref is None:
                ids = list(self.payouts)
            else:
                known = self.payouts_by_ref.get(ref)
                ids = [known] if known is not None else []
            recs = [self._get_payout(i) for i in ids]
            return {"results": [self._payout_control(r) if control else self._payout_public(r) for r in recs]}

    def settle_payout(self, payout_id: str, req: Any) -> dict[str, Any]:
        """/_sandbox/payouts/<id>/settle: set a final state now, cancel the automatic plan,
        send the webhook of that state."""
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        status = req.get("status")
        if status not in PAYOUT_REASONS:
            raise ApiError(400, "invalid_request", 'status must be "paid", "unpaid", "rejected" or "returned"')
        reason = req.get("failure_reason", PAYOUT_REASONS[status])
        if reason is not None and not isinstance(reason, str):
            raise ApiError(400, "invalid_request", "failure_reason must be a string or null")
        with self.lock:
            rec = self._get_payout(payout_id)
            rec["_plan"] += 1
            rec["_steps"] = []
            rec["status"], rec["failure_reason"] = status, reason
            rec["updated_on"] = int(time.time())
            snapshot = self._payout_public(rec)
            out = self._payout_control(rec)
            callback, generation = rec["_callback_url"], self.generation
        self._emit_payout(snapshot, callback, PAYOUT_STATUS_EVENTS[status], generation)
        return out

    def payout_targets(self, callback: str | None) -> list[str]:
        return [u for u in (callback, self.webhook_url) if u]

    def _emit_payout(self, payout: dict[str, Any], callback: str | None, event: str, generation: int) -> None:
        self._emit(payout["id"], "payout_id", self.payout_targets(callback),
                   self.webhook_body(payout, event), event, generation)

    def manual_deliver_payout(self, payout_id: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        with self.lock:
            rec = self._get_payout(payout_id)
            payout, callback = self._payout_public(rec), rec["_callback_url"]
        return self._manual_deliver(
            payout, req, "payout_id", PAYOUT_STATUS_EVENTS, lambda _p: self.payout_targets(callback),
            self.webhook_body, "event_type is required for a payout in this status",
            "no webhook target: no callback_url, no REVIO_SANDBOX_WEBHOOK_URL and no url given")

    def take_payout_timeout(self) -> bool:
        """Consume one payout_timeout_after_accept, if set."""
        with self.lock:
            if self.faults["payout_timeout_after_accept"] > 0:
                self.faults["payout_timeout_after_accept"] -= 1
                return True
            return False

# -- HTML -------------------------------------------------------------------
def money(minor: int, currency: str) -> str:
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{minor} {currency}"
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def page(title: str, inner: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:30em;margin:3em auto}"
            "button{font-size:1.2em;margin:.5em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{inner}</body></html>").encode()


def checkout_page(p: dict[str, Any]) -> bytes:
    pid = html.escape(p["id"])
    rows = "".join(f"<li>{html.escape(str(x['name']))}: {money(x['price'] * x['quantity'], p['purchase']['currency'])}"
                   f"{' x' + str(x['quantity']) if x['quantity'] != 1 else ''}</li>"
                   for x in p["purchase"]["products"])
    inner = (f"<p>Revio sandbox checkout for <b>{html.escape(p['client']['email'])}</b></p>"
             f"<ul>{rows}</ul>"
             f"<p>Total: <b id='amount'>{money(p['purchase']['total'], p['purchase']['currency'])}</b></p>"
             f"<p>Status: <span id='status'>{html.escape(p['status'])}</span></p>")
    if p["status"] == "created":
        inner += (f"<form method='post' action='/p/{pid}/pay' style='display:inline'>"
                  "<button type='submit' name='action' value='pay'>Pay</button></form>"
                  f"<form method='post' action='/p/{pid}/decline' style='display:inline'>"
                  "<button type='submit' name='action' value='decline'>Decline</button></form>")
    return page("Revio checkout", inner)


# -- HTTP -------------------------------------------------------------------
PURCHASE_RE = re.compile(r"^/api/v1/purchases/([0-9a-fA-F-]{1,64})(?:/(cancel|refund))?/?$")
CHECKOUT_RE = re.compile(r"^/p/([0-9a-fA-F-]{1,64})/?(pay|decline)?/?$")
SANDBOX_PURCHASE_RE = re.compile(
    r"^/_sandbox/purchases/([0-9a-fA-F-]{1,64})(?:/(pay|decline|refund|chargeback|expire|deliver|sign))?/?$")
PAYOUT_RE = re.compile(r"^/api/v1/payouts/([0-9a-fA-F-]{1,64})/?$")
SANDBOX_PAYOUT_RE = re.compile(r"^/_sandbox/payouts/([0-9a-fA-F-]{1,64})(?:/(deliver|settle))?/?$")


class Handler(common.Handler):
    server_version = "RevioSandbox/1"
    prog = PROG
    RESET_KEY = "purchases"
    sandbox: Sandbox  # set on the class at start

    def _html(self, status: int, body: bytes) -> None:
        self._send(status, body, "text/html; charset=utf-8")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        if path.startswith("/api/"):
            self._api(method, path, raw, query)
        elif path.startswith("/_sandbox/"):
            self._control(method, path, query, raw)
        elif path.startswith("/p/"):
            self._checkout(method, path)
        else:
            raise ApiError(404, "not_found", "no such endpoint")

    def _answer_error(self, path: str, e: ApiError) -> None:
        if path.startswith("/p/"):
            self._html(e.status, page("Revio checkout", f"<p id='error'>{html.escape(e.message)}</p>"))
        else:
            self._json(e.status, e.body())

    def _answer_bug(self, method: str, path: str, e: Exception) -> None:
        log(f"internal error on {method} {path}: {type(e).__name__}: {e}")
        self._json(500, {"error": "sandbox_bug", "message": f"{type(e).__name__}: {e}"})

    # merchant API
    def _api(self, method: str, path: str, raw: bytes, query: dict[str, list[str]]) -> None:
        sb = self.sandbox
        fault = sb.api_fault()
        if fault:
            raise fault
        if path.rstrip("/") == "/api/v1/public_key" and method == "GET":
            self._send(200, sb.public_pem, "text/plain; charset=utf-8")
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):].strip() != sb.api_key:
            raise ApiError(401, "unauthorized", "invalid or missing API key")
        if path.rstrip("/") == "/api/v1/purchases":
            if method != "POST":
                raise ApiError(405, "method_not_allowed", "use POST")
            self._json(201, sb.create_purchase(self._body_json(raw)))
            return
        m = PURCHASE_RE.match(path)
        if m:
            pid, action = m.group(1), m.group(2)
            if action is None:
                if method != "GET":
                    raise ApiError(405, "method_not_allowed", "use GET")
                self._json(200, sb.get_purchase(pid))
            elif method != "POST":
                raise ApiError(405, "method_not_allowed", "use POST")
            else:  # cancel, refund
                self._json(200, sb.transition(pid, action))
            return
        if path.rstrip("/") == "/api/v1/payouts":
            if method == "POST":
                self._create_payout(raw)
            elif method == "GET":
                ref = (query.get("reference") or [None])[0]
                if ref is None:
                    raise ApiError(400, "invalid_request", "the reference query parameter is required")
                self._json(200, sb.find_payouts(ref))
            else:
                raise ApiError(405, "method_not_allowed", "use POST or GET")
            return
        m = PAYOUT_RE.match(path)
        if m:
            if method != "GET":
                raise ApiError(405, "method_not_allowed", "use GET")
            self._json(200, sb.get_payout(m.group(1)))
            return
        raise ApiError(404, "not_found", "no such endpoint")

    def _create_payout(self, raw: bytes) -> None:
        sb = self.sandbox
        payout, created = sb.create_payout(self._body_json(raw))
        status = 201 if created else 200
        if sb.take_payout_timeout():
            # Revio accepted (and scheduled) the payout, but the answer comes too late
            log(f"POST /api/v1/payouts/ {status}: holding the answer {PAYOUT_TIMEOUT_SLEEP_S:g} s "
                "(payout_timeout_after_accept)")
            time.sleep(PAYOUT_TIMEOUT_SLEEP_S)
            try:
                self._json(status, payout)
            except OSError as e:  # the client gave up long ago
                self.close_connection = True
                log(f"POST /api/v1/payouts/ {status}: client gone ({type(e).__name__})")
            return
        self._json(status, payout)

    # hosted checkout
    def _checkout(self, method: str, path: str) -> None:
        m = CHECKOUT_RE.match(path)
        if not m:
            raise ApiError(404, "not_found", "no such page")
        pid, action = m.group(1), m.group(2)
        if action is None:
            if method != "GET":
                raise ApiError(405, "method_not_allowed", "use GET")
            self._html(200, checkout_page(self.sandbox.get_purchase(pid)))
            return
        if method != "POST":
            raise ApiError(405, "method_not_allowed", "use the buttons (POST)")
        p = self.sandbox.transition(pid, action)
        target = p["success_redirect"] if action == "pay" else p["failure_redirect"]
        if target:
            self._send(303, b"", "text/plain", {"Location": target})
            return
        title = "Payment successful" if action == "pay" else "Payment declined"
        self._html(200, page(title, f"<p>Purchase <code>{html.escape(pid)}</code> is now "
                                    f"<b id='status'>{html.escape(p['status'])}</b>.</p>"))

    # sandbox control API
    def _control(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        sb = self.sandbox
        p = path.rstrip("/")
        if self._basic_control(method, p, raw):
            return
        if p == "/_sandbox/deliveries" and method == "GET":
            pid = (query.get("purchase_id") or [None])[0]
            payout_id = (query.get("payout_id") or [None])[0]
            self._json(200, sb.list_deliveries(pid, payout_id))
        elif p == "/_sandbox/sign" and method == "POST":
            self._json(200, {"signature": sb.sign(raw)})
        elif p == "/_sandbox/payouts" and method == "GET":
            self._json(200, sb.find_payouts((query.get("reference") or [None])[0], control=True))
        elif p.startswith("/_sandbox/payouts/"):
            m = SANDBOX_PAYOUT_RE.match(path)
            if not m:
                raise ApiError(404, "not_found", "no such sandbox endpoint")
            payout_id, action = m.group(1), m.group(2)
            if action is None and method == "GET":
                self._json(200, sb.get_payout(payout_id, control=True))
            elif method != "POST" or action is None:
                raise ApiError(405, "method_not_allowed", "use POST")
            elif action == "settle":
                self._json(200, sb.settle_payout(payout_id, self._body_json(raw)))
            else:  # deliver
                self._json(200, sb.manual_deliver_payout(payout_id, self._body_json(raw)))
        else:
            m = SANDBOX_PURCHASE_RE.match(path)
            if not m:
                raise ApiError(404, "not_found", "no such sandbox endpoint")
            pid, action = m.group(1), m.group(2)
            if action is None and method == "GET":
                self._json(200, sb.get_purchase(pid))
            elif method != "POST" or action is None:
                raise ApiError(405, "method_not_allowed", "use POST")
            elif action in ("pay", "decline", "refund", "chargeback", "expire"):
                self._json(200, sb.transition(pid, action))
            elif action == "deliver":
                self._json(200, sb.manual_deliver(pid, self._body_json(raw)))
            else:  # sign
                self._json(200, {"signature": sb.sign(raw)})


def main(argv: list[str] | None = None) -> int:
    def make_sandbox(args: Any) -> Sandbox:
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        return Sandbox(os.environ.get("REVIO_SANDBOX_PUBLIC_URL") or f"http://{shown_host}:{args.port}")

    return common.serve(
        argv, PROG, "Revio payment provider sandbox", int(os.environ.get("PURSE_REVIO_PORT", "4580")),
        Handler, make_sandbox,
        lambda sb: f"brand {sb.brand_id}, webhook url {'set' if sb.webhook_url else 'unset'}")


if __name__ == "__main__":
    sys.exit(main())
