#!/usr/bin/env python3
"""Local sandbox of the Revio payment provider (redirect payment flow).

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
  GET  /_sandbox/faults                    current faults
  POST /_sandbox/faults                    partial update of
        {"down": bool, "latency_ms": int, "lose_webhooks": int,
         "duplicate_webhooks": int, "fail_next_api_calls": int}
        down: every /api/ call answers 503; latency_ms: every /api/ call sleeps
        first; lose_webhooks: the next N webhook deliveries (one event to one
        target = one delivery) are dropped, never sent nor retried, logged with
        lost=true; duplicate_webhooks: while set, every delivery is sent N extra
        times (independent copies, each with its own retries); fail_next_api_calls:
        the next N /api/ calls answer 500. Answers the faults after the update.
  POST /_sandbox/reset                     clears faults; with {"purchases": true}
        also forgets all purchases and the delivery log.
  GET  /_sandbox/deliveries[?purchase_id=] delivery log, oldest first: {purchase_id,
        event_type, url, attempt, status_code, error, lost, kind, at}; kind is
        "event", "duplicate" or "manual".
  GET  /_sandbox/purchases/<id>            the purchase (no auth, no faults).

Logging: one line per request (method, path, status) and one per webhook attempt;
never bodies nor signatures.
"""

from __future__ import annotations

import argparse
import base64
import html
import http.client
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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


def log(msg: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} revio: {msg}\n")
    sys.stderr.flush()


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            out["fields"] = self.fields
        return out


class Sandbox:
    """All sandbox state and behaviour; HTTP-agnostic except for webhook sending."""

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
                "duplicate_webhooks": 0, "fail_next_api_calls": 0}

    def get_faults(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.faults)

    def set_faults(self, update: Any) -> dict[str, Any]:
        if not isinstance(update, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        clean: dict[str, Any] = {}
        for k, v in update.items():
            if k not in self.faults:
                raise ApiError(400, "invalid_request", f"unknown fault {k!r}")
            if k == "down":
                if not isinstance(v, bool):
                    raise ApiError(400, "invalid_request", "down must be a boolean")
            elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ApiError(400, "invalid_request", f"{k} must be a non-negative integer")
            clean[k] = v
        with self.lock:
            self.faults.update(clean)
            return dict(self.faults)

    def reset(self, purchases: bool) -> None:
        with self.lock:
            self.faults = self._no_faults()
            if purchases:
                self.purchases.clear()
                self.deliveries.clear()

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
                      status: int | None = None, error: str | None = None, lost: bool = False) -> None:
        entry = {"purchase_id": pid, "event_type": event, "url": url, "attempt": attempt,
                 "status_code": status, "error": error, "lost": lost, "kind": kind, "at": time.time()}
        with self.lock:
            self.deliveries.append(entry)
        outcome = "lost (fault)" if lost else (status if status is not None else error)
        log(f"webhook {event} {pid} -> {url} attempt {attempt} [{kind}]: {outcome}")

    def list_deliveries(self, pid: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(d) for d in self.deliveries if pid is None or d["purchase_id"] == pid]

    def post(self, url: str, body: bytes) -> int:
        """POST a signed body once; returns the HTTP status, raises on connection error."""
        u = urllib.parse.urlsplit(url)
        conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(u.hostname or "127.0.0.1", u.port, timeout=self.timeout_s)
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/json",
                "X-Signature": self.sign(body),
                "User-Agent": "revio-sandbox-webhooks/1",
            })
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def emit(self, purchase: dict[str, Any], event: str) -> None:
        """Schedule the deliveries of one event to every target, applying faults."""
        body = self.webhook_body(purchase, event)
        for url in self.targets(purchase):
            with self.lock:
                lose = self.faults["lose_webhooks"] > 0
                if lose:
                    self.faults["lose_webhooks"] -= 1
                extra = self.faults["duplicate_webhooks"]
            if lose:
                self._log_delivery(purchase["id"], event, url, 1, "event", error="lost", lost=True)
                continue
            for i in range(1 + extra):
                kind = "event" if i == 0 else "duplicate"
                threading.Thread(target=self._deliver, args=(purchase["id"], event, url, body, kind),
                                 daemon=True, name=f"webhook-{purchase['id'][:8]}").start()

    def _deliver(self, pid: str, event: str, url: str, body: bytes, kind: str) -> None:
        for attempt in range(1, self.max_attempts + 1):
            try:
                status = self.post(url, body)
                self._log_delivery(pid, event, url, attempt, kind, status=status)
                if 200 <= status < 300:
                    return
            except Exception as e:  # connection refused, timeout, reset, ...
                self._log_delivery(pid, event, url, attempt, kind, error=f"{type(e).__name__}: {e}")
            if attempt < self.max_attempts:
                delay = self.retry_base_ms * (2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                time.sleep(delay / 1000.0)
        log(f"webhook {event} {pid} -> {url}: gave up after {self.max_attempts} attempts")

    def manual_deliver(self, pid: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        purchase = self.get_purchase(pid)
        times, concurrent = req.get("times", 1), bool(req.get("concurrent", False))
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 1000:
            raise ApiError(400, "invalid_request", "times must be an integer in 1..1000")
        # default event from the stored status, before any override
        event = req.get("event_type") or STATUS_EVENTS.get(purchase["status"])
        if "status" in req:
            if not isinstance(req["status"], str):
                raise ApiError(400, "invalid_request", "status must be a string")
            purchase["status"] = req["status"]
        if not isinstance(event, str):
            raise ApiError(400, "invalid_request", "event_type is required for a purchase in this status")
        url = req.get("url")
        targets = [url] if isinstance(url, str) and url else self.targets(purchase)
        if not targets:
            raise ApiError(400, "invalid_request", "no webhook target: no success_callback, "
                           "no REVIO_SANDBOX_WEBHOOK_URL and no url given")
        body = self.webhook_body(purchase, event)
        jobs = [t for _ in range(times) for t in targets]
        results: list[dict[str, Any]] = [{} for _ in jobs]
        barrier = threading.Barrier(len(jobs)) if concurrent else None

        def run(i: int, target: str) -> None:
            if barrier is not None:
                try:
                    barrier.wait(timeout=30)
                except threading.BrokenBarrierError:
                    pass
            try:
                status = self.post(target, body)
                results[i] = {"url": target, "status_code": status}
                self._log_delivery(pid, event, target, 1, "manual", status=status)
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
                results[i] = {"url": target, "status_code": None, "error": err}
                self._log_delivery(pid, event, target, 1, "manual", error=err)

        if concurrent:
            threads = [threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(jobs)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        else:
            for i, t in enumerate(jobs):
                run(i, t)
        return {"purchase_id": pid, "event_type": event,
                "status_codes": [r.get("status_code") for r in results], "results": results}


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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets bursts of concurrent connections


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RevioSandbox/1"
    sandbox: Sandbox  # set on the class at start

    # quiet default logging; we log one line per request ourselves
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        path = self.path.split("?", 1)[0]
        log(f"{self.command} {path} {status}")

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _html(self, status: int, body: bytes) -> None:
        self._send(status, body, "text/html; charset=utf-8")

    def _body_json(self, raw: bytes) -> Any:
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "invalid_json", "body is not valid JSON")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        raw = self._read_body()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/api/"):
                self._api(method, path, raw)
            elif path.startswith("/_sandbox/"):
                self._control(method, path, urllib.parse.parse_qs(url.query), raw)
            elif path.startswith("/p/"):
                self._checkout(method, path)
            else:
                raise ApiError(404, "not_found", "no such endpoint")
        except ApiError as e:
            if path.startswith("/p/"):
                self._html(e.status, page("Revio checkout", f"<p id='error'>{html.escape(e.message)}</p>"))
            else:
                self._json(e.status, e.body())
        except Exception as e:  # a bug in the sandbox: answer 500, keep serving
            log(f"internal error on {method} {path}: {type(e).__name__}: {e}")
            self._json(500, {"error": "sandbox_bug", "message": f"{type(e).__name__}: {e}"})

    # merchant API
    def _api(self, method: str, path: str, raw: bytes) -> None:
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
        raise ApiError(404, "not_found", "no such endpoint")

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
        if p == "/_sandbox/health" and method == "GET":
            self._json(200, {"ok": True})
        elif p == "/_sandbox/faults" and method == "GET":
            self._json(200, sb.get_faults())
        elif p == "/_sandbox/faults" and method == "POST":
            self._json(200, sb.set_faults(self._body_json(raw)))
        elif p == "/_sandbox/reset" and method == "POST":
            body = self._body_json(raw)
            sb.reset(bool(isinstance(body, dict) and body.get("purchases")))
            self._json(200, {"faults": sb.get_faults()})
        elif p == "/_sandbox/deliveries" and method == "GET":
            pid = (query.get("purchase_id") or [None])[0]
            self._json(200, sb.list_deliveries(pid))
        elif p == "/_sandbox/sign" and method == "POST":
            self._json(200, {"signature": sb.sign(raw)})
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
    ap = argparse.ArgumentParser(description="Revio payment provider sandbox")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PURSE_REVIO_PORT", "4580")))
    args = ap.parse_args(argv)

    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    public_url = os.environ.get("REVIO_SANDBOX_PUBLIC_URL") or f"http://{shown_host}:{args.port}"
    Handler.sandbox = Sandbox(public_url)
    server = Server((args.host, args.port), Handler)

    import signal

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"listening on http://{args.host}:{args.port} (brand {Handler.sandbox.brand_id}, "
        f"webhook url {'set' if Handler.sandbox.webhook_url else 'unset'})")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
