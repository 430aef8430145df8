"""Helpers shared by the Purse benchmarks (tools/bench/*.py). Standard library plus boto3 and
PyYAML, which the project virtualenv (tools/stack/venv.sh, moto[server]) already holds.

* ``Stack``: the local stack the dev server provisions from template.yaml under a name prefix
  (default ``bench-``), and each function's environment resolved against it, the way
  ``purse_local::provision::Stack::function_env`` does for ``make dev``.
* ``FakeRuntime``: a tiny Lambda Runtime API (``/2018-06-01/runtime/...``) on 127.0.0.1 that
  timestamps every call, hands out queued events and holds ``/next`` when it has none.
* ``DevServer``: starts / stops ``target/debug/purse-devserver`` with its log in a file.
* ``Emulator``: the emulator's request counters (``/_emulator/stats``).

Nothing here asserts on timings: the benchmarks report figures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DEFAULT_PREFIX = "bench-"


# --------------------------------------------------------------------------- small utilities
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; a JSON body is sent and parsed when given / returned. Never raises on
    an HTTP error status: the status is returned."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw, rh = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, rh = e.code, e.read(), dict(e.headers)
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed, rh


def summary(values: list[float]) -> dict[str, float]:
    """min / median / p90 / max / mean of a sample (nearest-rank p90)."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    p90 = v[max(0, -(-9 * len(v) // 10) - 1)]
    return {"n": len(v), "min": v[0], "median": statistics.median(v), "p90": p90, "max": v[-1],
            "mean": statistics.fmean(v)}


def aws_env() -> dict[str, str]:
    """The emulator settings with-stack.sh exports (fails loudly when they are missing)."""
    need = ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PURSE_REVIO_URL"]
    missing = [n for n in need if not os.environ.get(n)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run under tools/stack/with-stack.sh (see tools/bench/run.sh)")
    return {n: os.environ[n] for n in need}


def boto(service: str):
    import boto3  # in the project venv (a moto dependency)

    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))


# --------------------------------------------------------------------------- emulator counters
class Emulator:
    def __init__(self, endpoint: str | None = None):
        self.url = (endpoint or os.environ["AWS_ENDPOINT_URL"]).rstrip("/")

    def stats(self) -> dict[str, dict[str, int]]:
        status, body, _ = http("GET", f"{self.url}/_emulator/stats")
        if status != 200:
            raise RuntimeError(f"emulator stats: {status} {body}")
        return body

    def reset(self) -> None:
        http("POST", f"{self.url}/_emulator/stats/reset")

    def wait_quiet(self, service: str = "dynamodb", quiet_s: float = 1.0, timeout_s: float = 30) -> dict:
        """Waits until the counters of ``service`` stop changing for ``quiet_s``; returns them all."""
        deadline = time.monotonic() + timeout_s
        last = self.stats()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.stats()
            if now.get(service) != last.get(service):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return now
        return last


# --------------------------------------------------------------------------- template + stack
def _load_template() -> dict[str, Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(name: str):
        def construct(loader: yaml.SafeLoader, node: yaml.Node):
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {name: value}
        return construct

    for tag in ("Ref", "GetAtt", "Sub", "If", "Equals", "Join", "Select", "Split", "Not", "And", "Or",
                "FindInMap", "GetAZs", "ImportValue", "Condition"):
        Loader.add_constructor(f"!{tag}", tagged("Fn::" + tag if tag != "Ref" else "Ref"))
    with open(TEMPLATE, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)  # noqa: S506 - SafeLoader subclass


class Stack:
    """A stack provisioned by the dev server under ``prefix`` (``{prefix}{LogicalId}`` names)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, api_base_url: str = "http://127.0.0.1:3000"):
        self.prefix = prefix
        self.api_base_url = api_base_url.rstrip("/")
        self.template = _load_template()
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self._physical: dict[str, tuple[str, str]] = {}

    # what the dev server's purse_local::provision::local_parameters sets
    def parameters(self) -> dict[str, str]:
        params = {k: str(v["Default"]) for k, v in self.template.get("Parameters", {}).items() if "Default" in v}
        params["Stage"] = "local"
        params["JwtIssuer"] = self.api_base_url
        params["FrontendUrl"] = f"{self.api_base_url}/dev"
        if os.environ.get("PURSE_REVIO_URL"):
            params["RevioBaseUrl"] = os.environ["PURSE_REVIO_URL"]
        params["RevioAllowInsecureHttp"] = "true"  # the sandbox is http; only local stacks allow it
        for logical, res in self.resources.items():
            path = (res.get("Metadata") or {}).get("LocalPath")
            if res.get("Type") == "AWS::Serverless::Function" and path:
                params[f"{logical}Url.FunctionUrl"] = f"{self.api_base_url}{path}"
        return params

    def exists(self) -> bool:
        try:
            boto("dynamodb").describe_table(TableName=f"{self.prefix}PurseTable")
            return True
        except Exception:  # noqa: BLE001 - ResourceNotFound or no emulator
            return False

    def physical(self, logical: str) -> tuple[str, str]:
        """(what !Ref yields, the ARN) of a provisioned resource."""
        if logical in self._physical:
            return self._physical[logical]
        kind = self.resources[logical]["Type"]
        name = f"{self.prefix}{logical}"
        region = os.environ.get("AWS_REGION", "us-east-1")
        if kind == "AWS::DynamoDB::Table":
            out = (name, f"arn:aws:dynamodb:{region}:123456789012:table/{name}")
        elif kind == "AWS::SQS::Queue":
            sqs = boto("sqs")
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            out = (url, arn)
        elif kind == "AWS::SecretsManager::Secret":
            arn = boto("secretsmanager").describe_secret(SecretId=name)["ARN"]
            out = (arn, arn)
        else:
            raise KeyError(f"{logical} ({kind}) is not provisioned locally")
        self._physical[logical] = out
        return out

    def resolve(self, value: Any, params: dict[str, str]) -> str:
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            return params[ref] if ref in params else self.physical(ref)[0]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical, attr = target.split(".", 1) if isinstance(target, str) else target
            if f"{logical}.{attr}" in params:
                return params[f"{logical}.{attr}"]
            if attr == "Arn":
                return self.physical(logical)[1]
            raise KeyError(f"cannot resolve !GetAtt {logical}.{attr}")
        if isinstance(value, dict) and "Fn::Sub" in value:
            text = value["Fn::Sub"]

            def sub(m: re.Match[str]) -> str:
                name = m.group(1)
                ref = {"Fn::GetAtt": name} if "." in name else {"Ref": name}
                return self.resolve(ref, params)
            return re.sub(r"\$\{([^}]+)\}", sub, text)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def function_logical_id(self, binary: str) -> str:
        for logical, res in self.resources.items():
            props = ((res.get("Metadata") or {}).get("BuildProperties") or {})
            if res.get("Type") == "AWS::Serverless::Function" and props.get("Binary") == binary:
                return logical
        raise KeyError(f"no function with binary {binary} in template.yaml")

    def function_env(self, binary: str) -> dict[str, str]:
        """The environment template.yaml gives ``binary`` (Globals, then the function's own)."""
        logical = self.function_logical_id(binary)
        params = self.parameters()
        glob = (((self.template.get("Globals") or {}).get("Function") or {}).get("Environment") or {})
        own = ((self.resources[logical]["Properties"].get("Environment") or {}))
        variables = {**(glob.get("Variables") or {}), **(own.get("Variables") or {})}
        return {k: self.resolve(v, params) for k, v in variables.items()}

    def lambda_env(self, binary: str, runtime_api: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What a Lambda process of ``binary`` starts with: the runtime's variables, the
        function's configuration (memory from the template's Globals), credentials and region,
        plus the emulator endpoint (the only non-Lambda variable)."""
        logical = self.function_logical_id(binary)
        props = self.resources[logical]["Properties"]
        glob = ((self.template.get("Globals") or {}).get("Function") or {})
        memory = str(props.get("MemorySize") or glob.get("MemorySize") or 128)
        name = f"{self.prefix}{logical}"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "_HANDLER": "bootstrap",
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory,
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/01/01/[1]{uuid.uuid4().hex}",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        }
        env.update(self.function_env(binary))
        env.update(extra or {})
        return env


# --------------------------------------------------------------------------- fake Runtime API
PREFIX = "/2018-06-01/runtime"


class FakeRuntime:
    """The Lambda Runtime API, enough for lambda_runtime 1.x, timestamping every call with
    ``time.perf_counter()``.

    ``GET /invocation/next`` is timestamped on arrival (``next_times``). While ``gate`` is
    closed, or no event is queued, it is held open (as Lambda does between invocations); when
    an event is handed out its id and the moment its body was written are kept in ``served``.
    ``POST /invocation/<id>/response|error`` and ``/init/error`` are timestamped and kept in
    ``responses`` / ``init_errors``. ``release()`` lets every held ``/next`` return (used after
    the process was killed)."""

    def __init__(self) -> None:
        runtime = self
        self.cond = threading.Condition()
        self.reset()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # see tools/bench/nodelay/sitecustomize.py

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                t = time.perf_counter()
                if self.path != f"{PREFIX}/invocation/next":
                    return self._send(404, b'{"errorMessage":"not found"}')
                with runtime.cond:
                    runtime.next_times.append(t)
                    runtime.cond.notify_all()
                    generation = runtime.generation
                    while generation == runtime.generation and not (runtime.gate and runtime.events):
                        runtime.cond.wait(0.5)
                    if generation != runtime.generation:  # released: the process is gone
                        self.close_connection = True
                        return
                    payload = runtime.events.popleft()
                request_id = str(uuid.uuid4())
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                }
                # Timestamped just before the write: a handler time can only come out a hair
                # long, never short.
                with runtime.cond:
                    runtime.served[request_id] = time.perf_counter()
                    runtime.order.append(request_id)
                try:
                    self._send(200, body, headers)
                except OSError:
                    return

            def do_POST(self) -> None:  # noqa: N802
                t = time.perf_counter()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                m = re.fullmatch(rf"{PREFIX}/invocation/([^/]+)/(response|error)", self.path)
                with runtime.cond:
                    if m:
                        runtime.responses[m.group(1)] = (t, m.group(2), body)
                    elif self.path == f"{PREFIX}/init/error":
                        runtime.init_errors.append(body)
                    runtime.cond.notify_all()
                self._send(202, b'{"status":"OK"}')

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                # headers and body in one write
                self._headers_buffer.append(b"\r\n")
                self._headers_buffer.append(body)
                self.flush_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a killed process resets its connections; that is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def reset(self, events: list[Any] | None = None, gate: bool = True) -> None:
        with self.cond:
            self.generation = getattr(self, "generation", 0) + 1
            self.next_times: list[float] = []
            self.events: deque[Any] = deque(events or [])
            self.gate = gate
            self.served: dict[str, float] = {}
            self.order: list[str] = []
            self.responses: dict[str, tuple[float, str, bytes]] = {}
            self.init_errors: list[bytes] = []
            self.cond.notify_all()

    def push(self, events: list[Any]) -> None:
        with self.cond:
            self.events.extend(events)
            self.cond.notify_all()

    def open_gate(self) -> None:
        with self.cond:
            self.gate = True
            self.cond.notify_all()

    def release(self) -> None:
        """Ends every held /next (after the process is gone)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def wait_next(self, count: int, proc: subprocess.Popen, timeout: float) -> float | None:
        """Waits for the ``count``-th /next; None when the process exited or time ran out."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.next_times) < count:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return None
                self.cond.wait(0.005)
            return self.next_times[count - 1]

    def wait_responses(self, count: int, proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.responses) < count:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return False
                self.cond.wait(0.01)
            return True

    def invocations(self) -> list[dict[str, Any]]:
        """Per served event, in order: handler time (event written -> response received) in ms."""
        out = []
        with self.cond:
            for rid in self.order:
                if rid in self.responses:
                    t, kind, body = self.responses[rid]
                    out.append({"ms": (t - self.served[rid]) * 1000, "kind": kind, "body": body})
        return out

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def spawn(binary: Path, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, float]:
    """Starts ``binary`` like Lambda's init would; returns the process and its spawn time."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own descriptor
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(binary.parent))
    finally:
        log.close()
    return proc, t0


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (peak RSS since its exec; ru_maxrss would include the forking
    Python parent's pages)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def cpu_ns(pid: int) -> int | None:
    """CPU time so far of every thread of a live process, in ns (/proc/<pid>/task/*/schedstat;
    finer than the 10 ms ticks of /proc/<pid>/stat)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        return None
    return total


def kill(proc: subprocess.Popen) -> dict[str, float]:
    """SIGKILLs and reaps ``proc``; returns its CPU time (user+sys, ms) and peak RSS (MiB)."""
    rss = peak_rss_mib(proc.pid) if proc.poll() is None else None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.returncode is None:
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out = {"cpu_ms": (ru.ru_utime + ru.ru_stime) * 1000}
        if rss is not None:
            out["max_rss_mib"] = rss
        return out
    return {}


# --------------------------------------------------------------------------- dev server
class DevServer:
    """``target/debug/purse-devserver`` on a free port with stack prefix ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, log_path: Path | None = None, port: int | None = None):
        self.prefix = prefix
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or (ROOT / "target" / "bench" / "devserver.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        binary = ROOT / "target" / "debug" / "purse-devserver"
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: cargo build -p purse-devserver")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PURSE_PORT": str(self.port), "PURSE_HOST": "127.0.0.1",
               "PURSE_STACK_PREFIX": self.prefix, "NO_COLOR": "1", "RUST_LOG": os.environ.get("BENCH_DEVSERVER_LOG", "info")}
        log = open(self.log_path, "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen([str(binary)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=str(ROOT))
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"purse-devserver exited ({self.proc.returncode}); see {self.log_path}:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            if "Purse dev server:" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"purse-devserver did not start within {timeout}s; see {self.log_path}")

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ensure_stack(prefix: str = DEFAULT_PREFIX) -> str | None:
    """Makes sure the stack ``prefix`` exists (a short dev server run provisions it). Returns
    the API base URL the dev server used when it had to start one, else None."""
    stack = Stack(prefix)
    if stack.exists():
        return None
    server = DevServer(prefix, log_path=ROOT / "target" / "bench" / "devserver-provision.log")
    server.start()
    server.stop()
    return server.base_url


# --------------------------------------------------------------------------- DynamoDB item size
def item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB item size in bytes (attribute names + values), per AWS's rules:
    strings and binaries by UTF-8 / raw length, numbers about 1 byte per 2 significant
    digits + 1, maps and lists 3 bytes + 1 per element."""

    def value_size(v: dict[str, Any]) -> int:
        (kind, val), = v.items()
        if kind == "S":
            return len(val.encode())
        if kind == "N":
            digits = val.lstrip("-").replace(".", "").strip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind == "B":
            return len(val)
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in val.items())
        if kind == "L":
            return 3 + sum(value_size(x) + 1 for x in val)
        if kind in ("SS", "NS", "BS"):
            return sum(value_size({kind[0]: x}) for x in val)
        return 0

    return sum(len(k.encode()) + value_size(v) for k, v in item.items())
