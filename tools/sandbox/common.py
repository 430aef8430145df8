"""What the provider sandboxes (revio.py, kyc.py, telephony.py) share.

The threaded HTTP server and the skeleton of their JSON request handler (body reading,
answers, error handling, the common /_sandbox/ endpoints), the JSON error they answer,
environment and request parsing helpers, fault updates, the webhook HTTP client, and
main()'s start-up. Standard library only.

The sandboxes are started as scripts (``python tools/sandbox/kyc.py --port N``, see
tools/stack/up.sh) from any directory; each puts its own folder first on sys.path to
import this file, and the tests import them from that folder too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


def log(prog: str, msg: str) -> None:
    """One line on stderr: ``HH:MM:SS <prog>: <msg>``."""
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {prog}: {msg}\n")
    sys.stderr.flush()


class ApiError(Exception):
    """An error answered as JSON ``{"error": code, "message": text, "fields"?: {path: text}}``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            out["fields"] = self.fields
        return out


# -- configuration and request fields --------------------------------------------------
def env_int(prog: str, name: str, default: int, minimum: int = 0) -> int:
    """An integer environment variable (unset or blank: ``default``); a bad one stops the start."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{prog}: {name}={raw!r} is not an integer")
    if value < minimum:
        raise SystemExit(f"{prog}: {name} must be at least {minimum}")
    return value


def int_field(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    """``body[key]`` (``default`` when absent), an integer in lo..hi, else 400 ``invalid_request``."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(400, "invalid_request", f"{key} must be an integer in {lo}..{hi}")
    return value


# -- faults ------------------------------------------------------------------------------
class FaultsMixin:
    """GET and POST /_sandbox/faults of a sandbox whose ``faults`` dict, guarded by
    ``lock``, holds booleans (the keys in BOOLEAN_FAULTS) and non-negative integers."""

    BOOLEAN_FAULTS: tuple[str, ...] = ()
    lock: threading.Lock
    faults: dict[str, Any]

    def get_faults(self) -> dict[str, Any]:
        with self.lock:
            return dict(self.faults)

    def set_faults(self, update: Any) -> dict[str, Any]:
        """A partial update: unknown keys and bad values are refused (400), nothing applied."""
        if not isinstance(update, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        clean: dict[str, Any] = {}
        for k, v in update.items():
            if k not in self.faults:
                raise ApiError(400, "invalid_request", f"unknown fault {k!r}")
            if k in self.BOOLEAN_FAULTS:
                if not isinstance(v, bool):
                    raise ApiError(400, "invalid_request", f"{k} must be a boolean")
            elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ApiError(400, "invalid_request", f"{k} must be a non-negative integer")
            clean[k] = v
        with self.lock:
            self.faults.update(clean)
            return dict(self.faults)


# -- webhooks ----------------------------------------------------------------------------
def http_request(url: str, method: str, body: bytes | None, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes]:
    """One request to an http(s) URL; (status, body). Raises on connection errors and timeouts."""
    u = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(u.hostname or "127.0.0.1", u.port, timeout=timeout)
    try:
        conn.request(method, (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def run_all(n: int, concurrent: bool, job: Callable[[int], None]) -> None:
    """``job(0)`` .. ``job(n - 1)``: one after the other, or with ``concurrent`` each in its
    own thread, all released together by a barrier (waiting 30 s at most), and joined."""
    if not concurrent:
        for i in range(n):
            job(i)
        return
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        job(i)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


# -- HTTP --------------------------------------------------------------------------------
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 resets bursts of concurrent connections


class Handler(BaseHTTPRequestHandler):
    """The JSON request handling of a sandbox. A subclass sets ``prog`` (its log prefix),
    ``server_version`` and ``RESET_KEY`` and implements ``_route``; main() sets ``sandbox``
    (an object with get_faults, set_faults and reset(forget: bool)).

    GET and POST are dispatched; other methods get http.server's 501 unless a subclass
    adds them. Every answer is logged as one line: method, path without query, status."""

    protocol_version = "HTTP/1.1"
    prog = "sandbox"
    RESET_KEY = ""  # the flag of a /_sandbox/reset body that also forgets all records
    ERRORS: tuple[type[Exception], ...] = (ApiError,)  # answered with e.status and e.body()
    sandbox: Any  # set on the class at start

    # quiet default logging; we log one line per request ourselves (never the query nor
    # a body: they may carry personal data)
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
        log(self.prog, f"{self.command} {self.path.split('?', 1)[0]} {status}")

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    @staticmethod
    def _body_json(raw: bytes) -> Any:
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

    def _dispatch(self, method: str) -> None:
        raw = self._read_body()
        url = urllib.parse.urlsplit(self.path)
        path = self._normalise(url.path)
        try:
            self._route(method, path, urllib.parse.parse_qs(url.query), raw)
        except self.ERRORS as e:
            self._answer_error(path, e)
        except Exception as e:  # a bug in the sandbox: answer 500, keep serving
            self._answer_bug(method, path, e)

    def _normalise(self, path: str) -> str:
        """The path the routes see (and errors are logged with)."""
        return path

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        raise NotImplementedError

    def _answer_error(self, path: str, e: Any) -> None:
        self._json(e.status, e.body())

    def _answer_bug(self, method: str, path: str, e: Exception) -> None:
        # only the exception's type: its message could carry request data
        log(self.prog, f"internal error on {method} {path}: {type(e).__name__}")
        self._json(500, {"error": "sandbox_bug", "message": type(e).__name__})

    def _basic_control(self, method: str, path: str, raw: bytes) -> bool:
        """GET /_sandbox/health, GET and POST /_sandbox/faults, POST /_sandbox/reset (with
        ``{RESET_KEY: true}`` also forgets all records); False for any other request.
        ``path`` without a trailing slash."""
        sb = self.sandbox
        if path == "/_sandbox/health" and method == "GET":
            self._json(200, {"ok": True})
        elif path == "/_sandbox/faults" and method == "GET":
            self._json(200, sb.get_faults())
        elif path == "/_sandbox/faults" and method == "POST":
            self._json(200, sb.set_faults(self._body_json(raw)))
        elif path == "/_sandbox/reset" and method == "POST":
            body = self._body_json(raw)
            sb.reset(bool(isinstance(body, dict) and body.get(self.RESET_KEY)))
            self._json(200, {"faults": sb.get_faults()})
        else:
            return False
        return True


def serve(argv: list[str] | None, prog: str, description: str, default_port: int,
          handler: type[Handler], make_sandbox: Callable[[argparse.Namespace], Any],
          describe: Callable[[Any], str]) -> int:
    """main() of a sandbox: ``[--host 127.0.0.1] [--port default_port]``, serves until
    SIGTERM or SIGINT; 0. ``describe(sandbox)`` completes the start-up log line."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=default_port)
    args = ap.parse_args(argv)

    handler.sandbox = make_sandbox(args)
    server = Server((args.host, args.port), handler)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(prog, f"listening on http://{args.host}:{args.port} ({describe(handler.sandbox)})")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    log(prog, "stopped")
    return 0
