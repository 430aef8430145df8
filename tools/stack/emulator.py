#!/usr/bin/env python3
"""Local AWS emulator for Purse: moto's server app behind a tiny WSGI middleware.

Serves DynamoDB, SQS (JSON protocol, as the current AWS SDKs speak it; the
query protocol works too) and Secrets Manager -- in fact every service moto
knows -- on one port, like ``moto_server``. Clients use any dummy credentials,
region us-east-1 and ``AWS_ENDPOINT_URL=http://127.0.0.1:<port>``.

What the middleware adds on top of moto (5.2.5):

* One global lock around every request whose ``X-Amz-Target`` header starts
  with ``DynamoDB_``. moto restores a whole table from a copy when a
  TransactWriteItems is cancelled, losing writes made concurrently by other
  requests; serialising DynamoDB avoids that. SQS (long polls included) and
  Secrets Manager stay concurrent.
* Request counters for benchmarks, answered by the middleware itself (never
  reaching moto):
    GET  /_emulator/stats        -> {"dynamodb": {"TransactWriteItems": n, ...},
                                     "sqs": {...}, "secretsmanager": {...}}
    POST /_emulator/stats/reset  -> {"reset": true}   (zeroes the counters)
  Operation names are the part of ``X-Amz-Target`` after the dot.
* Quiet: no per-request log lines unless ``--verbose``.

moto's own control API is still reachable, e.g. ``POST /moto-api/reset``
wipes all emulated state.

Usage: emulator.py [--host 127.0.0.1] [--port $PURSE_EMULATOR_PORT|4566] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections import defaultdict
from typing import Any, Callable, Iterable

# moto reads this for URLs it builds for itself; set before importing it.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

STATS_PATH = "/_emulator/stats"
RESET_PATH = "/_emulator/stats/reset"

# X-Amz-Target prefix -> service key in the stats answer
TARGET_SERVICES = (
    ("DynamoDB_", "dynamodb"),
    ("DynamoDBStreams_", "dynamodbstreams"),
    ("AmazonSQS.", "sqs"),
    ("secretsmanager.", "secretsmanager"),
)


class SerialisingMiddleware:
    """Serialise DynamoDB requests, count requests by operation, serve /_emulator/."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.dynamodb_lock = threading.Lock()
        self.stats_lock = threading.Lock()
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    # -- counters ---------------------------------------------------------
    def _count(self, target: str) -> None:
        for prefix, service in TARGET_SERVICES:
            if target.startswith(prefix):
                op = target.split(".", 1)[1] if "." in target else target
                with self.stats_lock:
                    self.stats[service][op] += 1
                return

    def _snapshot(self) -> dict[str, dict[str, int]]:
        with self.stats_lock:
            snap = {svc: dict(ops) for svc, ops in self.stats.items()}
        snap.setdefault("dynamodb", {})
        return snap

    def _reset(self) -> None:
        with self.stats_lock:
            self.stats.clear()

    @staticmethod
    def _json(start_response: Any, status: str, body: Any) -> list[bytes]:
        data = json.dumps(body, sort_keys=True).encode()
        start_response(
            status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    # -- WSGI -------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/"):
            method = environ.get("REQUEST_METHOD", "GET")
            p = path.rstrip("/")
            if p == STATS_PATH and method == "GET":
                return self._json(start_response, "200 OK", self._snapshot())
            if p == RESET_PATH and method == "POST":
                self._reset()
                return self._json(start_response, "200 OK", {"reset": True})
            return self._json(start_response, "404 Not Found", {"error": "unknown emulator path"})

        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            self._count(target)
        if not target.startswith("DynamoDB_"):
            return self.app(environ, start_response)

        # Run moto and drain its response entirely while holding the lock, so the
        # whole operation (including any lazy body generation) is serialised.
        with self.dynamodb_lock:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]


class QuietHandler(MotoRequestHandler):
    verbose = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.verbose:
            super().log_request(code, size)


def build_app() -> SerialisingMiddleware:
    moto_app = DomainDispatcherApplication(create_backend_app)
    return SerialisingMiddleware(moto_app)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PURSE_EMULATOR_PORT", "4566"))
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    os.environ["MOTO_PORT"] = str(args.port)
    QuietHandler.verbose = args.verbose
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    server = make_server(
        args.host, args.port, build_app(), threaded=True, request_handler=QuietHandler
    )

    def stop(signum: int, frame: Any) -> None:
        # shutdown() blocks until serve_forever returns: call it off the main thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    print(f"emulator: listening on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("emulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
