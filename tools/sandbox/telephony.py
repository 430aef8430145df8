#!/usr/bin/env python3
"""Local sandbox of a Twilio-compatible telephony provider (inbound PSTN calls, TwiML).

Standard library only: an HTTP server, xml.etree for TwiML, HMAC-SHA1 for
Twilio's ``X-Twilio-Signature``. All state lives in memory behind one lock and is
lost on restart.

It plays Twilio for Purse's phone calls: a caller dials our toll-free number, we
answer TwiML (a ``<Gather>`` for the PIN, then a ``<Dial>`` with a ``timeLimit``
to the callee's ``<Client>``), and when the call ends the provider posts our
status callback. The sandbox does the provider's side of that conversation
against our real webhook URLs; a test drives it through the control API.

Usage: telephony.py [--host 127.0.0.1] [--port $PURSE_TELEPHONY_PORT|4600]

Environment
  TELEPHONY_SANDBOX_AUTH_TOKEN   the account's auth token, the HMAC key of every
                                 signature (default ``purse-dev-telephony-token``)
  TELEPHONY_SANDBOX_ACCOUNT_SID  ``AC`` + 32 lower-case hex digits (default
                                 ``AC00000000000000000000000000000001``)
  TELEPHONY_SANDBOX_VOICE_URL    our voice webhook: the URL the toll-free number is
                                 configured with (default
                                 ``http://127.0.0.1:3000/webhooks/telephony/voice``)
  TELEPHONY_SANDBOX_STATUS_URL   our status callback (default
                                 ``http://127.0.0.1:3000/webhooks/telephony/status``)
  TELEPHONY_SANDBOX_TOLL_FREE    the number callers dial, E.164 (default ``+18005550100``)
  TELEPHONY_SANDBOX_MAX_ATTEMPTS status callback attempts, the first included (default 3)
  TELEPHONY_SANDBOX_RETRY_BASE_MS  delay before retry n (n = 1, 2, ...) is
                                 base * 2^(n-1) ms, no jitter (default 500)
  TELEPHONY_SANDBOX_WEBHOOK_TIMEOUT_S  timeout of one webhook request (default 15,
                                 Twilio's read timeout)
  A bad value (not an integer, a malformed SID, number or URL) stops the start
  with a message naming the variable.

Signatures (Twilio's scheme, https://www.twilio.com/docs/usage/webhooks/webhooks-security)
  ``X-Twilio-Signature: base64(HMAC-SHA1(auth_token, url + k1 + v1 + k2 + v2 ...))``
  where ``url`` is the full URL the request goes to, exactly as configured
  (scheme, host, port, path and query string) and the POST parameters are sorted
  by key, then by value for a repeated key, each key immediately followed by its
  value. A GET request signs the URL (its query carries the parameters) alone.
  ``sign(auth_token, url, params)`` and ``verify(...)`` in this module implement
  it; the tests check it against Twilio's published vectors. Twilio's scheme has
  no timestamp: a retry or a duplicate carries the very same signature, so a
  receiver must de-duplicate by content (CallSid + CallStatus), not by signature.

What a call does (``POST /_sandbox/calls``), as Twilio does it for an inbound call
  Every request is a POST, ``Content-Type: application/x-www-form-urlencoded``,
  headers ``X-Twilio-Signature``, ``I-Twilio-Idempotency-Token`` (one per request,
  the same on its retries and duplicates) and ``User-Agent: TwilioProxy/1.1``.
  Common parameters: AccountSid, ApiVersion=2010-04-01, CallSid (``CA`` + 32 hex),
  Called, Caller, Direction=inbound, From, To (Caller = From, Called = To).
  1. The voice URL with those and CallStatus=ringing.
  2. Our answer is TwiML, executed verb by verb:
     <Say>, <Play>, <Pause>  nothing (no time passes)
     <Gather>   takes the next entry of ``digits``; if there is one, POSTs the
                Gather's ``action`` (relative URLs resolve against the current
                document's URL; default: the current document's URL) with the
                common parameters, CallStatus=in-progress, Digits (cut to
                ``numDigits``), FinishedOnKey ("" when numDigits was reached, else
                the finishOnKey, default "#") and msg=Gather End, and executes the
                TwiML it answers. With no digits left the caller entered nothing:
                execution goes on with the verb after the Gather (or POSTs the
                action with Digits="" if actionOnEmptyResult="true"), as Twilio does.
     <Dial>     dials its noun: <Client>IDENTITY</Client> (or
                <Client><Identity>IDENTITY</Identity></Client>), <Number>, or a bare
                number. The callee behaves per ``outcome``. Answered: the talk
                lasts min(talk_seconds, timeLimit) (timeLimit default 14400; a
                non-positive or non-integer one is ignored, Twilio warning 13216).
                With an ``action`` it POSTs it with CallStatus=in-progress (or
                completed if the caller hung up), DialCallSid, DialCallStatus
                (completed|busy|no-answer|failed|canceled) and DialCallDuration (the
                talk seconds, only when answered), and executes the TwiML answer;
                without one, execution goes on with the next verb.
     <Redirect> fetches its URL (POST, or its method attribute) and executes that.
     <Hangup>   ends the call.
     <Reject>   as the FIRST verb of the call: the call is never answered and
                ends ``busy`` (reason="busy") or ``no-answer`` (reason="rejected",
                the default), without CallDuration (Twilio: "Using <Reject> as the
                first verb ... is the only way to prevent Twilio from answering a
                call"). Anywhere else it ends the answered call like <Hangup>.
     anything else is skipped and noted in the record's ``warnings``.
     Running out of verbs ends the call. At most 20 documents per call.
     A webhook that fails (connection error, timeout, non-2xx: Twilio error
     11200) or answers something that is not ``<Response>`` XML (12100) ends the
     call as Twilio does after playing "an application error has occurred": the
     call was answered, so it ends ``completed``.
  3. When the call has ended: the status callback, with the common parameters,
     CallStatus, CallDuration (seconds, only for ``completed``), Timestamp (RFC
     2822), CallbackSource=call-progress-events and SequenceNumber=0.
     Retried on a connection error, a timeout or a non-2xx answer up to
     MAX_ATTEMPTS attempts, same body, same signature, same idempotency token.
     (Twilio itself retries a webhook once, on a failed connection only, unless
     the URL carries connection overrides such as ``#rc=3&rp=all``: do not rely
     on retries, reconcile with the Calls resource below.)

  THE CALL'S DURATION IS NOT THE TALK TIME. As at Twilio, our <Gather>/<Dial>
  answer the inbound call, and CallDuration counts from that answer to the
  hang-up: ivr_seconds (time in the PIN prompt) + the Dial's ringing (ring_seconds
  when answered or cancelled, the Dial's ``timeout``, default 30, when nobody
  answers) + the talk time. An inbound call we answered ends ``completed`` even
  when the callee did not answer; the callee's outcome and talk seconds are
  DialCallStatus / DialCallDuration on the Dial's action (and the child call
  below). With the defaults (ivr_seconds 0, ring_seconds 0) an answered call's
  CallDuration is min(talk_seconds, timeLimit), and <Hangup/> gives
  ``completed`` with CallDuration 0.

Provider API (like Twilio's REST API, for reconciliation)
  Auth: HTTP basic, user AccountSid, password the auth token; wrong or missing
  -> 401 ``{"code": 20003, "message": "Authenticate", "status": 401}``.
  GET /2010-04-01/Accounts/<AccountSid>/Calls/<CallSid>.json    a call: {sid,
      account_sid, parent_call_sid, from, to, direction ("inbound", or
      "outbound-dial" for a Dial's child leg, whose ``to`` is ``client:ID``),
      status (ringing|in-progress|completed|busy|no-answer|failed|canceled),
      duration (seconds as a string, null until it ended), start_time, end_time
      (RFC 2822 or null), api_version, uri}; 404 code 20404 if unknown.
  GET /2010-04-01/Accounts/<AccountSid>/Calls.json[?ParentCallSid=CA...]
      {"calls": [...]} newest first (the child legs of a call with ParentCallSid).

Sandbox control API (no auth, JSON in and out, under /_sandbox/; the same paths
under /sandbox/ work too, and GET /health is GET /_sandbox/health)
  GET  /_sandbox/health     {"ok": true}
  POST /_sandbox/calls      place an inbound call. Body:
        {"from": E.164 (required), "to"?: E.164 (default the toll-free number),
         "digits"?: "123456" | ["000000", "123456"] | null  (one entry per
                    <Gather>, in order; null/absent: the caller enters nothing),
         "talk_seconds"?: int >= 0 (default 30; how long the callee would talk),
         "outcome"?: "completed" (callee answers, default) | "no-answer" | "busy"
                    | "failed" | "canceled" (the caller hangs up while the callee
                    rings): what the <Dial>ed callee does,
         "ivr_seconds"?: int >= 0 (default 0), "ring_seconds"?: int >= 0 (default 0),
         "caller_hangs_up_early"?: bool (the caller hangs up while our voice URL
                    is still being asked: the call ends ``canceled``, no TwiML runs),
         "voice_url"?, "status_url"?: http(s) URLs overriding the configured ones,
         "real_time"?: bool (really sleep ivr, ring and talk seconds; default
                    false: durations are reported, nothing waits),
         "wait"?: bool (default false)}
        With wait the answer (200) comes after the status callback was delivered
        or given up; without, at once (202), and the call runs in a thread.
        Answers the call record:
        {"call_sid", "account_sid", "from", "to", "state": "running"|"done",
         "status": null|final CallStatus, "duration": null|CallDuration (int),
         "answered": bool (our TwiML answered the call),
         "twiml": [each TwiML answer body, in order],
         "requests": [{"kind": "voice"|"gather"|"dial_action"|"redirect", "url",
                       "status_code": int|null, "error": null|str}],
         "dial": null | {"time_limit", "timeout", "client", "number", "outcome",
                  "duration" (talk seconds), "dial_call_sid", "action"} (the last
                  Dial), "dials": [every Dial], "error": null|"11200 ..."|"12100 ...",
         "warnings": [...], "started_at", "ended_at" (unix seconds),
         "status_callback": {"url", "params", "attempts": [http status (int) or
                  error string, ...], "delivered": null|bool, "lost": bool}}
  GET  /_sandbox/calls[/<call_sid>]   the records (newest first) / one record
  POST /_sandbox/calls/<call_sid>/status   {"duplicate": true, "times"?: 1..100}
        re-deliver the call's status callback now (a duplicate), byte-identical:
        same parameters, signature and idempotency token, no retries, faults
        ignored. 409 while the call has not ended. Answers {"results": [http
        status or error string, ...]}.
  POST /_sandbox/sign   {"url", "params": {key: value or [values]}, "auth_token"?}
        -> {"signature"} (to forge or replay requests in tests)
  GET  /_sandbox/faults        current faults
  POST /_sandbox/faults        partial update of
        {"lose_status_callbacks": 0, "status_callback_delay_ms": 0}
        lose_status_callbacks: the status callbacks of the next N calls that end
        are never sent (``status_callback.lost``); status_callback_delay_ms: each
        status callback waits that long before its first attempt.
  POST /_sandbox/reset   clears faults; with {"calls": true} also forgets every
        call (a running call then stops at its next step).
  Errors are JSON {"error": code, "message": text}.

Logging: one line per HTTP request (method, path, status) and one per webhook
request (call sid, kind, URL without its query, outcome). Never the auth token, a
signature, digits (the PIN), phone numbers or bodies.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Union

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # common.py, wherever we are started from
import common  # noqa: E402
from common import ApiError  # noqa: E402

PROG = "telephony"
DEFAULT_AUTH_TOKEN = "purse-dev-telephony-token"
DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000001"
DEFAULT_TOLL_FREE = "+18005550100"
DEFAULT_VOICE_URL = "http://127.0.0.1:3000/webhooks/telephony/voice"
DEFAULT_STATUS_URL = "http://127.0.0.1:3000/webhooks/telephony/status"
API_VERSION = "2010-04-01"
DEFAULT_TIME_LIMIT = 14400  # Twilio's <Dial timeLimit> default: 4 hours
DEFAULT_DIAL_TIMEOUT = 30
MAX_DOCUMENTS = 20
OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled")
E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
ACCOUNT_SID_RE = re.compile(r"AC[0-9a-f]{32}")
CALL_SID_RE = re.compile(r"CA[0-9a-f]{32}")
URL_RE = re.compile(r"https?://[^/\s]+(/\S*)?")

Params = Union[Mapping[str, Any], Iterable[tuple[str, str]]]


def log(msg: str) -> None:
    common.log(PROG, msg)


# -- Twilio request signatures ---------------------------------------------------
def param_pairs(params: Params) -> list[tuple[str, str]]:
    """(key, value) pairs of a mapping (a list value is a repeated key) or of pairs."""
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            pairs.append((str(key), "" if v is None else str(v)))
    return pairs


def sign(auth_token: str, url: str, params: Params = ()) -> str:
    """Twilio's ``X-Twilio-Signature`` of a request to ``url`` with POST ``params``."""
    data = url + "".join(k + v for k, v in sorted(param_pairs(params)))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


def verify(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """True if ``signature`` is the request's signature (constant-time compare)."""
    return hmac.compare_digest(sign(auth_token, url, params).encode(), signature.encode())


def rfc2822(t: float) -> str:
    return format_datetime(datetime.fromtimestamp(t, timezone.utc))


def url_for_log(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}{u.path}"


class TwilioError(Exception):
    """An error of the provider API, in Twilio's shape."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}"}


class CallGone(Exception):
    """The call was forgotten by a reset: stop running it."""


# -- configuration ---------------------------------------------------------------
def env_str(name: str, default: str, pattern: re.Pattern[str], what: str) -> str:
    value = os.environ.get(name) or default
    if not pattern.fullmatch(value):
        raise SystemExit(f"{PROG}: {name} must be {what}")
    return value


class Config:
    def __init__(self) -> None:
        self.auth_token = os.environ.get("TELEPHONY_SANDBOX_AUTH_TOKEN") or DEFAULT_AUTH_TOKEN
        self.account_sid = env_str("TELEPHONY_SANDBOX_ACCOUNT_SID", DEFAULT_ACCOUNT_SID,
                                   ACCOUNT_SID_RE, "AC followed by 32 lower-case hex digits")
        self.voice_url = env_str("TELEPHONY_SANDBOX_VOICE_URL", DEFAULT_VOICE_URL, URL_RE, "an http(s) URL")
        self.status_url = env_str("TELEPHONY_SANDBOX_STATUS_URL", DEFAULT_STATUS_URL, URL_RE, "an http(s) URL")
        self.toll_free = env_str("TELEPHONY_SANDBOX_TOLL_FREE", DEFAULT_TOLL_FREE, E164_RE, "an E.164 number")
        self.max_attempts = common.env_int(PROG, "TELEPHONY_SANDBOX_MAX_ATTEMPTS", 3, minimum=1)
        self.retry_base_ms = common.env_int(PROG, "TELEPHONY_SANDBOX_RETRY_BASE_MS", 500)
        self.timeout_s = common.env_int(PROG, "TELEPHONY_SANDBOX_WEBHOOK_TIMEOUT_S", 15, minimum=1)


# -- one call's request, validated -------------------------------------------------
class CallSpec:
    def __init__(self, body: Any, cfg: Config):
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        known = {"from", "to", "digits", "talk_seconds", "outcome", "ivr_seconds", "ring_seconds",
                 "caller_hangs_up_early", "voice_url", "status_url", "real_time", "wait"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ApiError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
        self.from_ = self._number(body, "from", None)
        self.to = self._number(body, "to", cfg.toll_free)
        digits = body.get("digits")
        if digits is None:
            self.digits: list[str] = []
        elif isinstance(digits, str):
            self.digits = [digits]
        elif isinstance(digits, list) and all(isinstance(d, str) for d in digits):
            self.digits = list(digits)
        else:
            raise ApiError(400, "invalid_request", "digits must be a string, a list of strings or null")
        if any(not re.fullmatch(r"[0-9*#]{0,64}", d) for d in self.digits):
            raise ApiError(400, "invalid_request", "digits may only hold 0-9, * and # (at most 64)")
        self.talk_seconds = self._seconds(body, "talk_seconds", 30)
        self.ivr_seconds = self._seconds(body, "ivr_seconds", 0)
        self.ring_seconds = self._seconds(body, "ring_seconds", 0)
        self.outcome = body.get("outcome", "completed")
        if self.outcome not in OUTCOMES:
            raise ApiError(400, "invalid_request", f"outcome must be one of {', '.join(OUTCOMES)}")
        self.hangs_up_early = self._bool(body, "caller_hangs_up_early")
        self.real_time = self._bool(body, "real_time")
        self.wait = self._bool(body, "wait")
        self.voice_url = self._url(body, "voice_url", cfg.voice_url)
        self.status_url = self._url(body, "status_url", cfg.status_url)

    @staticmethod
    def _number(body: dict[str, Any], key: str, default: str | None) -> str:
        value = body.get(key, default)
        if not isinstance(value, str) or not E164_RE.fullmatch(value):
            raise ApiError(400, "invalid_request", f"{key} must be an E.164 number such as +15551230001")
        return value

    @staticmethod
    def _seconds(body: dict[str, Any], key: str, default: int) -> int:
        return common.int_field(body, key, default, 0, 86400)

    @staticmethod
    def _bool(body: dict[str, Any], key: str) -> bool:
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise ApiError(400, "invalid_request", f"{key} must be a boolean")
        return value

    @staticmethod
    def _url(body: dict[str, Any], key: str, default: str) -> str:
        value = body.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not URL_RE.fullmatch(value):
            raise ApiError(400, "invalid_request", f"{key} must be an http(s) URL")
        return value


def new_sid(prefix: str = "CA") -> str:
    return prefix + secrets.token_hex(16)


def country_of(number: str) -> str | None:
    for prefix, country in (("+1", "US"), ("+91", "IN"), ("+44", "GB")):
        if number.startswith(prefix):
            return country
    return None


def int_attr(el: ET.Element, name: str, default: int, lo: int, hi: int) -> int | None:
    """An integer attribute in lo..hi, ``default`` when absent, None when invalid."""
    raw = el.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if lo <= value <= hi else None


# -- the sandbox -------------------------------------------------------------------
class Sandbox(common.FaultsMixin):
    """All state and behaviour; HTTP-agnostic except for the webhook client."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg or Config()
        self.lock = threading.Lock()
        self.calls: dict[str, dict[str, Any]] = {}
        self.children: dict[str, dict[str, Any]] = {}  # Dial legs by DialCallSid
        self.deliveries: dict[str, dict[str, Any]] = {}  # by call sid: url, params, headers
        self.faults = self._no_faults()
        self.generation = 0

    # -- faults --------------------------------------------------------------
    @staticmethod
    def _no_faults() -> dict[str, int]:
        return {"lose_status_callbacks": 0, "status_callback_delay_ms": 0}

    def reset(self, calls: bool) -> None:
        with self.lock:
            self.faults = self._no_faults()
            if calls:
                self.generation += 1
                self.calls.clear()
                self.children.clear()
                self.deliveries.clear()

    # -- records ---------------------------------------------------------------
    def get_call(self, sid: str) -> dict[str, Any]:
        with self.lock:
            rec = self.calls.get(sid)
            if rec is None:
                raise ApiError(404, "not_found", "no such call")
            return copy.deepcopy(rec)

    def list_calls(self) -> list[dict[str, Any]]:
        with self.lock:
            recs = sorted(self.calls.values(), key=lambda r: r["started_at"], reverse=True)
            return copy.deepcopy(recs)

    def _update(self, sid: str, generation: int, **changes: Any) -> None:
        with self.lock:
            rec = self.calls.get(sid)
            if rec is None or generation != self.generation:
                raise CallGone()
            rec.update(changes)

    def _append(self, sid: str, generation: int, key: str, item: Any) -> None:
        with self.lock:
            rec = self.calls.get(sid)
            if rec is None or generation != self.generation:
                raise CallGone()
            rec[key].append(item)

    # -- placing a call ------------------------------------------------------------
    def place_call(self, body: Any) -> tuple[bool, dict[str, Any]]:
        """Start a call; (waited, record). With ``wait`` it returns when it is done."""
        spec = CallSpec(body, self.cfg)
        sid = new_sid()
        now = time.time()
        rec: dict[str, Any] = {
            "call_sid": sid, "account_sid": self.cfg.account_sid, "from": spec.from_, "to": spec.to,
            "state": "running", "status": None, "duration": None, "answered": False,
            "twiml": [], "requests": [], "dial": None, "dials": [], "error": None, "warnings": [],
            "started_at": now, "ended_at": None,
            "status_callback": {"url": spec.status_url, "params": None, "attempts": [],
                                "delivered": None, "lost": False},
        }
        with self.lock:
            self.calls[sid] = rec
            generation = self.generation
        log(f"call {sid}: placed")
        if spec.wait:
            self._run(sid, spec, generation)
            return True, self.get_call(sid)
        t = threading.Thread(target=self._run, args=(sid, spec, generation), daemon=True,
                             name=f"call-{sid[-8:]}")
        t.start()
        return False, self.get_call(sid)

    def _common_params(self, sid: str, spec: CallSpec) -> list[tuple[str, str]]:
        params = [("AccountSid", self.cfg.account_sid), ("ApiVersion", API_VERSION), ("CallSid", sid),
                  ("Called", spec.to), ("Caller", spec.from_), ("Direction", "inbound"),
                  ("From", spec.from_), ("To", spec.to)]
        for key, number in (("Called", spec.to), ("Caller", spec.from_), ("From", spec.from_), ("To", spec.to)):
            country = country_of(number)
            if country:
                params.append((f"{key}Country", country))
        return params

    def _run(self, sid: str, spec: CallSpec, generation: int) -> None:
        try:
            status, duration = self._execute(sid, spec, generation)
            ended = time.time()
            self._update(sid, generation, status=status, duration=duration, ended_at=ended)
            self._finish_child_legs(sid, ended)
            log(f"call {sid}: ended {status}" + (f", {duration} s" if duration is not None else ""))
            self._status_callback(sid, spec, generation, status, duration, ended)
            self._update(sid, generation, state="done")
        except CallGone:
            log(f"call {sid}: forgotten by a reset")
        except Exception as e:  # a sandbox bug: keep the record honest, keep serving
            log(f"call {sid}: sandbox error {type(e).__name__}")
            try:
                self._update(sid, generation, state="done", error=f"sandbox_bug: {type(e).__name__}")
            except CallGone:
                pass

    def _sleep(self, spec: CallSpec, seconds: int) -> None:
        if spec.real_time and seconds > 0:
            time.sleep(seconds)

    def _execute(self, sid: str, spec: CallSpec, generation: int) -> tuple[str, int | None]:
        """Run the call's TwiML; the final (CallStatus, CallDuration or None)."""
        common = self._common_params(sid, spec)
        digits = list(spec.digits)
        state = {"answered": False, "seconds": 0}

        def answer() -> None:
            if not state["answered"]:
                state["answered"] = True
                self._update(sid, generation, answered=True)

        def ended_with_error(error: str) -> tuple[str, int | None]:
            # Twilio answers to say "an application error has occurred", then hangs up.
            self._update(sid, generation, error=error)
            answer()
            return "completed", state["seconds"] + spec.ivr_seconds

        doc, url, err = self._fetch(sid, generation, "voice", spec.voice_url, "POST",
                                    common + [("CallStatus", "ringing")])
        if spec.hangs_up_early:
            return "canceled", None
        if err:
            return ended_with_error(err)
        self._sleep(spec, spec.ivr_seconds)
        documents = 1
        while True:
            next_doc: tuple[ET.Element | None, str, str | None] | None = None
            for verb in list(doc):
                tag = verb.tag
                if tag == "Reject":
                    if not state["answered"]:
                        return ("busy" if verb.get("reason") == "busy" else "no-answer"), None
                    return "completed", state["seconds"] + spec.ivr_seconds
                answer()
                if tag == "Hangup":
                    return "completed", state["seconds"] + spec.ivr_seconds
                if tag in ("Say", "Play", "Pause"):
                    continue
                if tag == "Redirect":
                    target = urllib.parse.urljoin(url, (verb.text or "").strip())
                    next_doc = self._fetch(sid, generation, "redirect", target, verb.get("method", "POST"),
                                           common + [("CallStatus", "in-progress")])
                    break
                if tag == "Gather":
                    entered = digits.pop(0) if digits else None
                    num = int_attr(verb, "numDigits", 0, 1, 10000)
                    finish_key = verb.get("finishOnKey", "#")
                    if entered:
                        sent = entered[:num] if num else entered
                        finished_on = "" if num and len(entered) >= num else finish_key
                    elif verb.get("actionOnEmptyResult", "false").lower() == "true":
                        sent, finished_on = "", ""
                    else:
                        continue  # nothing entered: on with the next verb
                    target = urllib.parse.urljoin(url, verb.get("action") or url)
                    next_doc = self._fetch(sid, generation, "gather", target, verb.get("method", "POST"),
                                           common + [("CallStatus", "in-progress"), ("Digits", sent),
                                                     ("FinishedOnKey", finished_on), ("msg", "Gather End")])
                    break
                if tag == "Dial":
                    talk, caller_gone, dial = self._dial(sid, spec, generation, verb)
                    state["seconds"] += talk
                    action = verb.get("action")
                    if action:
                        target = urllib.parse.urljoin(url, action)
                        params = common + [("CallStatus", "completed" if caller_gone else "in-progress"),
                                           ("DialCallSid", dial["dial_call_sid"]),
                                           ("DialCallStatus", dial["outcome"])]
                        if dial["outcome"] == "completed":
                            params.append(("DialCallDuration", str(dial["duration"])))
                        next_doc = self._fetch(sid, generation, "dial_action", target,
                                               verb.get("method", "POST"), params)
                    if caller_gone:  # the caller hung up: nothing more runs
                        return "completed", state["seconds"] + spec.ivr_seconds
                    if action:
                        break
                    continue
                self._append(sid, generation, "warnings", f"unsupported verb <{tag}> skipped")
            if next_doc is None:  # out of verbs
                return "completed", state["seconds"] + spec.ivr_seconds
            doc, url, err = next_doc  # type: ignore[assignment]
            if err:
                return ended_with_error(err)
            documents += 1
            if documents > MAX_DOCUMENTS:
                self._append(sid, generation, "warnings", f"more than {MAX_DOCUMENTS} TwiML documents: hung up")
                return "completed", state["seconds"] + spec.ivr_seconds

    def _dial(self, sid: str, spec: CallSpec, generation: int, verb: ET.Element
              ) -> tuple[int, bool, dict[str, Any]]:
        """One <Dial>: (seconds it adds to the call, caller hung up, dial record)."""
        time_limit = int_attr(verb, "timeLimit", DEFAULT_TIME_LIMIT, 1, 10**9)
        if time_limit is None:
            self._append(sid, generation, "warnings", "13216 invalid timeLimit: 14400 used")
            time_limit = DEFAULT_TIME_LIMIT
        timeout = int_attr(verb, "timeout", DEFAULT_DIAL_TIMEOUT, 1, 600)
        if timeout is None:
            self._append(sid, generation, "warnings", "invalid Dial timeout: 30 used")
            timeout = DEFAULT_DIAL_TIMEOUT
        client = number = None
        for noun in verb:
            if noun.tag == "Client":
                ident = noun.find("Identity")
                client = ((ident.text if ident is not None else noun.text) or "").strip()
            elif noun.tag == "Number":
                number = (noun.text or "").strip()
            else:
                self._append(sid, generation, "warnings", f"unsupported Dial noun <{noun.tag}> ignored")
        if client is None and number is None and (verb.text or "").strip():
            number = (verb.text or "").strip()
        outcome = spec.outcome
        talk = min(spec.talk_seconds, time_limit) if outcome == "completed" else 0
        ringing = {"completed": spec.ring_seconds, "no-answer": timeout,
                   "canceled": spec.ring_seconds}.get(outcome, 0)
        dial = {"time_limit": time_limit, "timeout": timeout, "client": client, "number": number,
                "outcome": outcome, "duration": talk, "dial_call_sid": new_sid(),
                "action": verb.get("action")}
        now = time.time()
        with self.lock:
            if sid not in self.calls:
                raise CallGone()
            self.children[dial["dial_call_sid"]] = {
                "sid": dial["dial_call_sid"], "parent_call_sid": sid, "from": spec.from_,
                "to": f"client:{client}" if client is not None else (number or ""),
                "status": "in-progress" if outcome == "completed" else outcome,
                "duration": None if outcome == "completed" else 0,
                "final_duration": talk, "final_status": outcome,
                "start_time": now, "end_time": None if outcome == "completed" else now,
            }
        self._update(sid, generation, dial=dial)
        self._append(sid, generation, "dials", dial)
        self._sleep(spec, ringing + talk)
        return ringing + talk, outcome == "canceled", dial

    def _finish_child_legs(self, sid: str, ended: float) -> None:
        with self.lock:
            for child in self.children.values():
                if child["parent_call_sid"] == sid and child["end_time"] is None:
                    child.update(status=child["final_status"], duration=child["final_duration"],
                                 end_time=ended)

    # -- webhooks ------------------------------------------------------------------
    def request(self, url: str, method: str, params: list[tuple[str, str]], token: str,
                auth_token: str | None = None) -> tuple[int, bytes]:
        """One signed webhook request; (status, body). Raises on connection errors and timeouts."""
        url = url.split("#", 1)[0]
        body: bytes | None
        if method == "GET":
            query = urllib.parse.urlencode(params)
            url = url + ("&" if "?" in url else "?") + query if query else url
            signature, body = sign(auth_token or self.cfg.auth_token, url), None
        else:
            signature = sign(auth_token or self.cfg.auth_token, url, params)
            body = urllib.parse.urlencode(params).encode()
        headers = {"X-Twilio-Signature": signature, "I-Twilio-Idempotency-Token": token,
                   "User-Agent": "TwilioProxy/1.1", "Accept": "*/*"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return common.http_request(url, method, body, headers, self.cfg.timeout_s)

    def _fetch(self, sid: str, generation: int, kind: str, url: str, method: str,
               params: list[tuple[str, str]]) -> tuple[ET.Element | None, str, str | None]:
        """Ask our side for TwiML; (the <Response> element, url, error or None)."""
        method = method.upper()
        if method not in ("GET", "POST"):
            method = "POST"
        entry: dict[str, Any] = {"kind": kind, "url": url, "status_code": None, "error": None}
        try:
            status, raw = self.request(url, method, params, secrets.token_hex(16))
            entry["status_code"] = status
        except Exception as e:  # connection refused, timeout, reset, ...
            entry["error"] = f"{type(e).__name__}: {e}"
            self._append(sid, generation, "requests", entry)
            log(f"call {sid}: {kind} -> {url_for_log(url)}: {type(e).__name__}")
            return None, url, f"11200 HTTP retrieval failure ({type(e).__name__})"
        self._append(sid, generation, "requests", entry)
        log(f"call {sid}: {kind} -> {url_for_log(url)}: {status}")
        if not 200 <= status < 300:
            return None, url, f"11200 HTTP retrieval failure (status {status})"
        text = raw.decode("utf-8", errors="replace")
        self._append(sid, generation, "twiml", text)
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            return None, url, "12100 Document parse failure"
        if root.tag != "Response":
            return None, url, f"12100 Document parse failure (root <{root.tag}>, not <Response>)"
        return root, url, None

    def _status_callback(self, sid: str, spec: CallSpec, generation: int, status: str,
                         duration: int | None, ended: float) -> None:
        params = self._common_params(sid, spec) + [("CallStatus", status)]
        if duration is not None:
            params.append(("CallDuration", str(duration)))
        params += [("Timestamp", rfc2822(ended)), ("CallbackSource", "call-progress-events"),
                   ("SequenceNumber", "0")]
        token = secrets.token_hex(16)
        with self.lock:
            lose = self.faults["lose_status_callbacks"] > 0
            if lose:
                self.faults["lose_status_callbacks"] -= 1
            delay_ms = self.faults["status_callback_delay_ms"]
            rec = self.calls.get(sid)
            if rec is None or generation != self.generation:
                raise CallGone()
            rec["status_callback"]["params"] = dict(params)
            self.deliveries[sid] = {"url": spec.status_url, "params": params, "token": token}
        if lose:
            log(f"call {sid}: status callback lost (fault)")
            with self.lock:
                rec["status_callback"].update(lost=True, delivered=False)
            return
        if delay_ms:
            time.sleep(delay_ms / 1000.0)
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                code, _ = self.request(spec.status_url, "POST", params, token)
                result: Any = code
                ok = 200 <= code < 300
            except Exception as e:
                result, ok = f"{type(e).__name__}: {e}", False
            log(f"call {sid}: status callback attempt {attempt} -> {url_for_log(spec.status_url)}: "
                f"{result if isinstance(result, int) else result.split(':', 1)[0]}")
            with self.lock:
                if sid not in self.calls or generation != self.generation:
                    raise CallGone()
                rec["status_callback"]["attempts"].append(result)
                if ok:
                    rec["status_callback"]["delivered"] = True
            if ok:
                return
            if attempt < self.cfg.max_attempts:
                time.sleep(self.cfg.retry_base_ms * 2 ** (attempt - 1) / 1000.0)
        with self.lock:
            rec["status_callback"]["delivered"] = False
        log(f"call {sid}: status callback given up after {self.cfg.max_attempts} attempts")

    def redeliver(self, sid: str, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        if req.get("duplicate", True) is not True:
            raise ApiError(400, "invalid_request", 'only {"duplicate": true} is supported')
        times = common.int_field(req, "times", 1, 1, 100)
        with self.lock:
            if sid not in self.calls:
                raise ApiError(404, "not_found", "no such call")
            delivery = self.deliveries.get(sid)
        if delivery is None:
            raise ApiError(409, "call_not_ended", "the call has not ended yet: no status callback to repeat")
        results: list[Any] = []
        for _ in range(times):
            try:
                code, _ = self.request(delivery["url"], "POST", delivery["params"], delivery["token"])
                results.append(code)
            except Exception as e:
                results.append(f"{type(e).__name__}: {e}")
            log(f"call {sid}: status callback duplicate -> {url_for_log(delivery['url'])}: "
                f"{results[-1] if isinstance(results[-1], int) else 'error'}")
        return {"results": results}

    # -- provider API (Twilio's Calls resource) ------------------------------------------
    def _resource(self, sid: str) -> dict[str, Any] | None:
        """Under the lock: the Calls resource of a parent call or a Dial leg."""
        rec = self.calls.get(sid)
        if rec is not None:
            if rec["status"] is not None:
                status = rec["status"]
            else:
                status = "in-progress" if rec["answered"] else "ringing"
            res = {"sid": sid, "parent_call_sid": None, "from": rec["from"], "to": rec["to"],
                   "direction": "inbound", "status": status,
                   "duration": None if rec["ended_at"] is None else str(rec["duration"] or 0),
                   "start_time": rec["started_at"], "end_time": rec["ended_at"]}
        else:
            child = self.children.get(sid)
            if child is None:
                return None
            res = {"sid": sid, "parent_call_sid": child["parent_call_sid"], "from": child["from"],
                   "to": child["to"], "direction": "outbound-dial", "status": child["status"],
                   "duration": None if child["duration"] is None else str(child["duration"]),
                   "start_time": child["start_time"], "end_time": child["end_time"]}
        acct = self.cfg.account_sid
        res.update(account_sid=acct, api_version=API_VERSION,
                   start_time=rfc2822(res["start_time"]),
                   end_time=None if res["end_time"] is None else rfc2822(res["end_time"]),
                   uri=f"/{API_VERSION}/Accounts/{acct}/Calls/{sid}.json")
        return res

    def api_call(self, sid: str) -> dict[str, Any]:
        with self.lock:
            res = self._resource(sid)
        if res is None:
            raise TwilioError(404, 20404, f"The requested resource /{API_VERSION}/Accounts/"
                                          f"{self.cfg.account_sid}/Calls/{sid}.json was not found")
        return res

    def api_calls(self, parent: str | None) -> dict[str, Any]:
        with self.lock:
            if parent:
                sids = [c["sid"] for c in sorted(self.children.values(), key=lambda c: c["start_time"],
                                                 reverse=True) if c["parent_call_sid"] == parent]
            else:
                sids = [r["call_sid"] for r in sorted(self.calls.values(), key=lambda r: r["started_at"],
                                                      reverse=True)]
            return {"calls": [self._resource(s) for s in sids]}


# -- HTTP ------------------------------------------------------------------------------
CALL_RE = re.compile(r"^/_sandbox/calls/([A-Za-z0-9]{1,64})(?:/(status))?$")
API_CALL_RE = re.compile(rf"^/{API_VERSION}/Accounts/([A-Za-z0-9]{{1,64}})/Calls(?:/([A-Za-z0-9]{{1,64}}))?\.json$")


class Handler(common.Handler):
    server_version = "TelephonySandbox/1"
    prog = PROG
    RESET_KEY = "calls"
    ERRORS = (ApiError, TwilioError)
    sandbox: Sandbox  # set on the class at start

    def _read_body(self) -> bytes:  # Content-Length only: a chunked body is not read
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _normalise(self, path: str) -> str:
        path = path.rstrip("/") or "/"
        if path == "/health":
            return "/_sandbox/health"
        if path.startswith("/sandbox/"):
            return "/_sandbox/" + path[len("/sandbox/"):]
        return path

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        if path.startswith(f"/{API_VERSION}/"):
            self._api(method, path, query)
        elif path.startswith("/_sandbox/"):
            self._control(method, path, raw)
        else:
            raise ApiError(404, "not_found", "no such endpoint")

    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        sb = self.sandbox
        expected = "Basic " + base64.b64encode(f"{sb.cfg.account_sid}:{sb.cfg.auth_token}".encode()).decode()
        given = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise TwilioError(401, 20003, "Authenticate")
        m = API_CALL_RE.match(path)
        if not m or m.group(1) != sb.cfg.account_sid:
            raise TwilioError(404, 20404, f"The requested resource {path} was not found")
        if method != "GET":
            raise TwilioError(405, 20004, "Method not allowed")
        if m.group(2):
            self._json(200, sb.api_call(m.group(2)))
        else:
            self._json(200, sb.api_calls((query.get("ParentCallSid") or [None])[0]))

    def _control(self, method: str, path: str, raw: bytes) -> None:
        sb = self.sandbox
        if self._basic_control(method, path, raw):
            return
        if path == "/_sandbox/calls" and method == "POST":
            waited, rec = sb.place_call(self._body_json(raw))
            self._json(200 if waited else 202, rec)
        elif path == "/_sandbox/calls" and method == "GET":
            self._json(200, sb.list_calls())
        elif path == "/_sandbox/sign" and method == "POST":
            self._json(200, {"signature": self._sign(self._body_json(raw))})
        else:
            m = CALL_RE.match(path)
            if not m:
                raise ApiError(404, "not_found", "no such sandbox endpoint")
            sid, action = m.group(1), m.group(2)
            if action is None and method == "GET":
                self._json(200, sb.get_call(sid))
            elif action == "status" and method == "POST":
                self._json(200, sb.redeliver(sid, self._body_json(raw)))
            else:
                raise ApiError(405, "method_not_allowed", "use GET for a call, POST for its /status")

    def _sign(self, req: Any) -> str:
        if not isinstance(req, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        url, params = req.get("url"), req.get("params", {})
        token = req.get("auth_token") or self.sandbox.cfg.auth_token
        if not isinstance(url, str) or not url:
            raise ApiError(400, "invalid_request", "url must be a non-empty string")
        if not isinstance(params, dict) or not all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in params.values()):
            raise ApiError(400, "invalid_request", "params must map keys to strings or lists of strings")
        if not isinstance(token, str):
            raise ApiError(400, "invalid_request", "auth_token must be a string")
        return sign(token, url, params)


def describe(sb: Sandbox) -> str:
    # URLs without their query (it could carry a secret); the auth token is never printed
    cfg = sb.cfg
    return (f"account {cfg.account_sid}, toll-free {cfg.toll_free}, voice url {url_for_log(cfg.voice_url)}, "
            f"status url {url_for_log(cfg.status_url)}, "
            f"auth token {'default' if cfg.auth_token == DEFAULT_AUTH_TOKEN else 'from the environment'}")


def main(argv: list[str] | None = None) -> int:
    return common.serve(argv, PROG, "Twilio-compatible telephony provider sandbox",
                        int(os.environ.get("PURSE_TELEPHONY_PORT") or "4600"), Handler,
                        lambda args: Sandbox(), describe)


if __name__ == "__main__":
    sys.exit(main())
