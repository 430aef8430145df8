"""Fixtures the sandbox tests (test_*.py beside this file) share.

A free port, a sandbox started as a subprocess on one (as tools/stack/up.sh starts it:
``python <script> --port N``), a fake server that receives the sandbox's webhooks,
plain HTTP calls and polling.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(get: Callable[[], list[T]], n: int, what: str, timeout: float = 5.0) -> list[T]:
    """``get()`` once it holds at least n items; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = get()
        if len(got) >= n:
            return got
        time.sleep(0.02)
    raise AssertionError(f"expected {n} {what}, got {len(get())}")


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    """One request (``Content-Type: application/json`` when it has a body); (status, body),
    for error statuses too."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def hook_path(test: unittest.TestCase) -> str:
    """A webhook path of its own for one test: ``/hook/<test method>/<random>``."""
    return "/hook/" + test.id().rsplit(".", 1)[1] + "/" + uuid.uuid4().hex[:8]


class SandboxProcess:
    """``python <script> --port <free port>`` with PYTHONUNBUFFERED, the environment
    without any ``<env_prefix>*`` variable plus ``env``, stdout and stderr in a log file;
    ready once GET /_sandbox/health answers (else RuntimeError, the process stopped)."""

    def __init__(self, script: str, env_prefix: str, env: dict[str, str], timeout: float = 30) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        full = {k: v for k, v in os.environ.items() if not k.startswith(env_prefix)}
        full.update({"PYTHONUNBUFFERED": "1", **env})
        self._logdir = tempfile.TemporaryDirectory()
        self._logpath = os.path.join(self._logdir.name, os.path.basename(script) + ".log")
        with open(self._logpath, "wb") as logfile:
            self.proc = subprocess.Popen([sys.executable, script, "--port", str(port)], env=full,
                                         stdout=logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}: {self.stop()}")
            try:
                urllib.request.urlopen(self.url + "/_sandbox/health", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("sandbox did not answer in time")
                time.sleep(0.05)

    def log(self) -> str:
        """The sandbox's stdout and stderr so far."""
        with open(self._logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self) -> str:
        """Terminate it (kill after 10 s) and remove the log; the whole log."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        out = self.log()
        self._logdir.cleanup()
        return out


class FakeServer:
    """An HTTP server on a free 127.0.0.1 port, in daemon threads, standing in for the
    side that receives a sandbox's webhooks. Every POST goes to ``answer(handler, body)``,
    which a subclass implements: (status, Content-Type or None, body). ``script`` maps a
    path to the statuses to answer next, in order (``scripted``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: dict[str, list[int]] = {}
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, ctype, body = fake.answer(self, raw)
                self.send_response(status)
                if ctype is not None:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class S(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

        self.server = S(("127.0.0.1", 0), H)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str | None, bytes]:
        raise NotImplementedError

    def scripted(self, path: str) -> int | None:
        """Under the lock: the next scripted status for ``path``, None when none is left."""
        script = self.script.get(path)
        return script.pop(0) if script else None

    def get(self, path: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def wait(self, path: str, n: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """``get(path)`` once it holds n requests."""
        return wait_for(lambda: self.get(path), n, f"request(s) at {path}", timeout)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver(FakeServer):
    """Records every webhook POST per path (with its query): {"headers" (lower-case
    names), "body", "at" (unix seconds)}; answers the scripted statuses, then 200."""

    def __init__(self) -> None:
        self.calls: dict[str, list[dict[str, Any]]] = {}
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, str | None, bytes]:
        with self.lock:
            self.calls.setdefault(handler.path, []).append(
                {"headers": {k.lower(): v for k, v in handler.headers.items()}, "body": body,
                 "at": time.time()})
            status = self.scripted(handler.path)
        return (200 if status is None else status), None, b""

    def get(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.calls.get(path, []))

    def all_bodies(self) -> list[bytes]:
        with self.lock:
            return [c["body"] for calls in self.calls.values() for c in calls]
